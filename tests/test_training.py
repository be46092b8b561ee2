"""Training plumbing on a real (tiny) ingested synthetic library: split, loader, loop, resume, evaluation."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from flows.ingest import ingest_library
from speednet.synthetic import write_synthetic_library
from storage import paths
from storage.clip_dataset import ShardClipBatches, split_units
from tasks.train import split_by_video, train_model
from tasks.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """Eight 2 s synthetic clips plus the half-2x / slow-motion variants, ingested at 64 px, 48-frame clips."""
    home = tmp_path_factory.mktemp("train-home")
    write_synthetic_library(home / "samples" / "synthetic", count=8, seed=3, duration_s=(2.1, 2.1),
                            sizes=((128, 72),), fps_choices=(25,), variants=True)
    ingest_library(library=str(home / "samples"), data_home=str(home), short_side_px=64, clip_frames=48)
    return home


TINY = TrainConfig(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2, log_every=1, loader_workers=0, seed=1)


def test_split_is_by_video_and_keeps_variants_out_of_training(tiny_home):
    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    train_ids = {e.video_id for e in split.train}
    assert train_ids and not train_ids & {e.video_id for e in split.held_out}
    assert all("variant-" not in e.path for e in split.train + split.held_out)
    assert all(e.domain == "synthetic" and e.scene_type for e in split.train)


def test_loader_ranks_and_workers_read_disjoint_units():
    units = list(range(23))
    seen = [u for rank in range(2) for worker in range(3)
            for u in split_units(units, rank=rank, world_size=2, worker=worker, num_workers=3)]
    assert sorted(seen) == units


def test_loader_units_are_the_row_groups_holding_selected_videos(tiny_home):
    """Row groups of held-out or variant videos are no units: no reader spins on clips it must skip."""
    source = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0).source()
    holding, row_groups = [], 0
    for shard, ids in sorted(source.videos_by_shard.items()):
        file = pq.ParquetFile(shard)
        row_groups += file.num_row_groups
        holding += [(shard, group) for group in range(file.num_row_groups)
                    if ids & set(file.read_row_group(group, columns=["video_id"])["video_id"].to_pylist())]
    assert source.units() == holding and len(holding) < row_groups


def test_loader_batches_hold_both_speeds_of_each_clip(tiny_home):
    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    from functools import partial

    from speednet.model import PRESETS
    from speednet.sampling import make_batch

    batches = ShardClipBatches(split.source(), clips_per_batch=2, seed=0, endless=False, shuffle_buffer=2,
                               make_batch=partial(make_batch, config=PRESETS["cpu"]))
    x, labels = next(iter(batches))
    assert x.shape == (4, 3, 16, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert labels.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_training_steps_run_and_a_resumed_run_reaches_the_same_step_count(tiny_home, tmp_path):
    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    first = train(dataclasses.replace(TINY, steps=2), split.source(), tmp_path / "run")
    assert [h["step"] for h in first["history"]] == [1, 2]
    resumed = train(TINY, split.source(), tmp_path / "run", resume=True)
    assert [h["step"] for h in resumed["history"]] == [1, 2, 3, 4]
    extra = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["extra"]
    assert extra["step"] == 4


def test_seeded_cpu_runs_repeat(tiny_home, tmp_path):
    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    a = train(dataclasses.replace(TINY, steps=2), split.source(), tmp_path / "a")
    b = train(dataclasses.replace(TINY, steps=2), split.source(), tmp_path / "b")
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_evaluation_scores_speednet_and_the_flow_baseline_on_the_same_clips(tiny_home, tmp_path):
    from speednet.evaluation import flow_baseline_accuracy, speed_versions, speednet_accuracy
    from speednet.model import build_speednet
    from tasks.train import load_clips

    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    clips = load_clips(split.train)
    natural, fast = speed_versions(clips[0], 16)
    np.testing.assert_array_equal(fast[1], clips[0][2])
    accuracy = speednet_accuracy(build_speednet(preset="cpu"), clips)
    assert 0.0 <= accuracy <= 1.0
    baseline = flow_baseline_accuracy(clips[: len(clips) // 2], clips[len(clips) // 2:], 16)
    assert 0.0 <= baseline["accuracy"] <= 1.0 and baseline["threshold"] > 0


def test_train_flow_registers_the_model_with_metrics_and_a_plot(tiny_home, monkeypatch):
    import fcntl
    import json

    import duckdb

    import tasks.train
    from flows.train import train_speednet

    held, real_load_clips = [], tasks.train.load_clips  # per shard read in evaluation: safe from deletion then?

    def load_clips_and_probe(entries, limit=None):
        for entry in entries:
            with open(entry.shard_path, "rb") as shard:
                try:
                    fcntl.flock(shard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held.append(False)
                except BlockingIOError:
                    held.append(True)
        return real_load_clips(entries, limit)

    monkeypatch.setattr(tasks.train, "load_clips", load_clips_and_probe)
    result = train_speednet(data_home=str(tiny_home), steps=2, batch_size=4, loader_workers=0, val_fraction=0.25,
                            checkpoint_every=1, procedural_share=0.5, eval_scenes=4, calibration_scenes=4)
    assert held and all(held), "training must hold its shards against deletion (storage.shards.reading)"
    con = duckdb.connect(str(paths.catalog_path(tiny_home)), read_only=True)
    try:
        ((model_id, checkpoint, metrics, config),) = con.execute(
            "SELECT model_id, checkpoint_path, metrics, config FROM models").fetchall()
    finally:
        con.close()
    assert model_id == result["model_id"] and checkpoint.endswith(f"{model_id}.pt")
    metrics, config = json.loads(metrics), json.loads(config)
    assert set(metrics) == {"synthetic", "real", "fresh_scenes"} and metrics["synthetic"]["clips"] > 0
    assert metrics["synthetic"]["flow_baseline_fit"] == "synthetic" and 0 <= metrics["synthetic"]["speednet_auc"] <= 1
    assert metrics["fresh_scenes"]["clips"] == 4 and 0 <= metrics["fresh_scenes"]["exact"] <= 1
    assert config["train"]["procedural_share"] == 0.5 and config["domains"] == ["real", "synthetic"]
    assert config["train"]["calibration_scenes"] == 4
    assert (tiny_home / "runs").exists() and result["plot"].endswith("curves.png")


# Loaded by every torchrun worker (through PYTHONPATH): appends what its rank does to rank<RANK>.jsonl.
_DDP_PROBE = """
import hashlib, json, os

if "RANK" in os.environ and "SPEEDNET_DDP_PROBE" in os.environ:
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import get_worker_info

    import speednet.model
    import storage.clip_dataset

    def record(**event):
        with open(os.path.join(os.environ["SPEEDNET_DDP_PROBE"], f"rank{os.environ['RANK']}.jsonl"), "a") as f:
            f.write(json.dumps(event) + "\\n")

    def read_unit(shard, group, video_ids, _read=storage.clip_dataset.read_unit):
        info = get_worker_info()
        record(unit=[shard, group], worker=info.id if info else 0)
        return _read(shard, group, video_ids)

    def save_checkpoint(path, *args, _save=speednet.model.save_checkpoint, **kwargs):
        record(saved=str(path))
        return _save(path, *args, **kwargs)

    def before_forward(module, inputs):
        if isinstance(module, DistributedDataParallel):
            weights = b"".join(p.detach().cpu().numpy().tobytes() for p in module.module.parameters())
            record(weights=hashlib.blake2b(weights, digest_size=16).hexdigest())

    storage.clip_dataset.read_unit = read_unit
    speednet.model.save_checkpoint = save_checkpoint
    register_module_forward_pre_hook(before_forward)
"""


def test_torchrun_ddp_on_cpu_keeps_ranks_in_step_on_disjoint_units_and_only_rank_0_checkpoints(
        tiny_home, tmp_path, monkeypatch):
    """Real DDP: two gloo ranks launched by train_model through torchrun, each observed by a probe."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(_DDP_PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SPEEDNET_DDP_PROBE", str(probe))
    split = split_by_video.fn(str(paths.catalog_path(tiny_home)), 0.25, 0)
    config = dataclasses.replace(TINY, loader_workers=2, warmup_steps=1)
    result = train_model.fn(config, split, str(tmp_path / "run"), False, 2)

    events = {rank: [json.loads(line) for line in (probe / f"rank{rank}.jsonl").read_text().splitlines()]
              for rank in (0, 1)}
    # every step ran on both ranks with the same weights going in: gradients were all-reduced
    weights = {rank: [e["weights"] for e in rank_events if "weights" in e] for rank, rank_events in events.items()}
    assert len(weights[0]) == config.steps and weights[0] == weights[1]
    assert len(set(weights[0])) == config.steps, "the weights must change at every step"
    assert [h["step"] for h in result["history"]] == list(range(1, config.steps + 1))
    # each (rank, loader worker) reads its own units; together they read every unit of the source
    readers: dict[tuple[int, int], set] = {}
    for rank, rank_events in events.items():
        for e in rank_events:
            if "unit" in e:
                readers.setdefault((rank, e["worker"]), set()).add(tuple(e["unit"]))
    assert len(readers) == 4 and sum(map(len, readers.values())) == len(set().union(*readers.values()))
    assert set().union(*readers.values()) == set(split.source().units())
    # only rank 0 writes checkpoints; the run folder holds nothing from rank 1
    saved = {rank: [e["saved"] for e in rank_events if "saved" in e] for rank, rank_events in events.items()}
    assert saved[1] == [] and len(saved[0]) == config.steps // config.checkpoint_every + 1  # + final.pt
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["final.pt", "history.json", "last.pt", "manifest.json"]
    assert torch.load(result["checkpoint"], weights_only=True)["extra"]["step"] == config.steps


def test_a_run_is_identified_by_what_shapes_its_steps_not_by_how_it_finishes():
    from tasks.trainer import TrainConfig, run_identity

    base = TrainConfig(steps=100, procedural_share=1.0)
    assert run_identity(base) == run_identity(dataclasses.replace(base, calibration_scenes=100))  # re-run: only the ending
    assert run_identity(base) != run_identity(dataclasses.replace(base, steps=200))
    # runs from before `width` existed keep their folder; a width of its own is another run
    assert run_identity(base) == repr(base).replace(", width=None", "").replace(", swa_from=None", "") \
        .replace(", input_size=None", "").replace(", pair_centring=None", "") \
        .replace(", bn_source='training'", "").replace(", calibration_scenes=0", "")
    assert run_identity(base) != run_identity(dataclasses.replace(base, width=0.5))
    assert run_identity(base) != run_identity(dataclasses.replace(base, input_size=80))
    assert run_identity(base) != run_identity(dataclasses.replace(base, swa_from=50))
    assert run_identity(base) != run_identity(dataclasses.replace(base, pair_centring=0.02))
    assert run_identity(base) == run_identity(dataclasses.replace(base, bn_source="scenes"))


def test_pair_centring_is_refused_without_same_batch_pairs_or_with_a_negative_weight():
    from tasks.trainer import TrainConfig

    with pytest.raises(ValueError, match="same_batch off"):
        TrainConfig(pair_centring=0.1, same_batch=False)
    with pytest.raises(ValueError, match=">= 0"):
        TrainConfig(pair_centring=-1.0)
    assert TrainConfig(pair_centring=0.0).pair_centring == 0.0  # weight 0: the plain loss
