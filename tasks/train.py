"""Prefect tasks of train-speednet: split by video, train, evaluate, plot, register."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from speednet.media import content_hash
from storage import catalog
from storage.atomic import atomic_write
from storage.clip_dataset import ClipSource
from storage.shards import iter_clips
from tasks.progress import StepProgress
from tasks.trainer import TrainConfig, train, write_manifest


@dataclass(frozen=True)
class VideoEntry:
    video_id: str
    path: str
    shard_path: str
    domain: str  # "synthetic" (has a physics sidecar) or "real"
    scene_type: str | None


@dataclass(frozen=True)
class DataSplit:
    """Training and held-out videos; never the same video on both sides."""

    train: tuple[VideoEntry, ...]
    held_out: tuple[VideoEntry, ...]
    snapshot: str  # hash of the training videos and their clip parameters

    def source(self, which: str = "train") -> ClipSource:
        by_shard: dict[str, set[str]] = {}
        for entry in getattr(self, which):
            by_shard.setdefault(entry.shard_path, set()).add(entry.video_id)
        return ClipSource({shard: frozenset(ids) for shard, ids in by_shard.items()})


def _sidecar(path: str) -> dict | None:
    sidecar = Path(path).with_suffix(".json")
    try:
        return json.loads(sidecar.read_text()) if sidecar.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def _held_out(video_id: str, seed: int, fraction: float) -> bool:
    draw = int(hashlib.blake2b(f"{seed}:{video_id}".encode(), digest_size=8).hexdigest(), 16) / 2**64
    return draw < fraction


@task(name="split-by-video", cache_policy=NO_CACHE)
def split_by_video(catalog_path: str, val_fraction: float, seed: int, train_on_real: bool = False) -> DataSplit:
    """Assign whole videos to train or held-out (a stable hash of video_id and seed).

    Synthetic clips whose sidecar says they are not at natural speed (half-2x, slow-motion
    variants) are evaluation material, never training data. Real clips are held out for
    the cross-domain score unless ``train_on_real``.
    """
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, path, shard_path, short_side_px, clip_frames FROM ingested_videos "
                           "ORDER BY video_id").fetchall()
    finally:
        con.close()
    if not rows:
        raise ValueError(f"{catalog_path} has no ingested videos; run ingest-library first")
    train_set, held_out, fingerprint = [], [], hashlib.blake2b(digest_size=16)
    for video_id, path, shard, short_side, clip_frames in rows:
        side = _sidecar(path)
        entry = VideoEntry(video_id, path, shard, "synthetic" if side else "real", (side or {}).get("scene_type"))
        natural = (side or {}).get("variant", "natural") == "natural"
        if not natural:
            continue
        if _held_out(video_id, seed, val_fraction) or (entry.domain == "real" and not train_on_real):
            held_out.append(entry)
        else:
            train_set.append(entry)
            fingerprint.update(f"{video_id}:{short_side}:{clip_frames};".encode())
    if not train_set:
        raise ValueError("no training videos after the split; ingest more videos or lower val_fraction")
    return DataSplit(tuple(train_set), tuple(held_out), fingerprint.hexdigest())


@task(name="train", cache_policy=NO_CACHE)
def train_model(config: TrainConfig, split: DataSplit, run_dir: str, resume: bool, nproc: int = 1) -> dict:
    """Run the training loop (in this process, or over ``nproc`` torchrun DDP processes)."""
    run_path = Path(run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    if nproc > 1:
        manifest = write_manifest(run_path / "manifest.json", config, split.source(), run_path, resume)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "tasks.trainer", "--manifest", str(manifest)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"torchrun training failed (exit {run.returncode}): {run.stderr[-3000:]}")
        history = json.loads((run_path / "history.json").read_text())
        return {"steps": config.steps, "history": history, "checkpoint": str(run_path / "last.pt")}
    with StepProgress(f"training {config.steps} steps", config.steps) as progress:
        done = {"step": 0}

        def on_log(entry: dict) -> None:
            progress.advance(entry["step"] - done["step"])
            done["step"] = entry["step"]
            print(f"step {entry['step']:>5}  loss {entry['loss']:.4f}  train acc {entry['train_accuracy']:.3f}  "
                  f"{entry['seconds']:.0f} s", flush=True)

        return train(config, split.source(), run_path, resume=resume, on_log=on_log)


def load_clips(entries: list[VideoEntry], limit: int | None = None) -> list[np.ndarray]:
    """The stored clips (3T frames each) of these videos, shard by shard; at most ``limit`` of them."""
    clips = []
    by_shard: dict[str, list[str]] = {}
    for entry in entries:
        by_shard.setdefault(entry.shard_path, []).append(entry.video_id)
    for shard, ids in sorted(by_shard.items()):
        for clip in iter_clips(shard, video_ids=ids):
            clips.append(clip.frames)
            if limit and len(clips) >= limit:
                return clips
    return clips


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_model(checkpoint: str, split: DataSplit, baseline_train_clips: int = 200) -> dict:
    """Held-out natural-vs-2x accuracy of SpeedNet and of the mean-flow baseline, synthetic and real apart."""
    from speednet.evaluation import flow_baseline_accuracy, speednet_accuracy
    from speednet.model import load_checkpoint
    from tasks.trainer import pick_device

    model, config, _ = load_checkpoint(checkpoint, map_location=pick_device())
    fit_clips = load_clips([e for e in split.train if e.domain == "synthetic"], limit=baseline_train_clips)
    metrics = {}
    for domain in ("synthetic", "real"):
        clips = load_clips([e for e in split.held_out if e.domain == domain])
        baseline = flow_baseline_accuracy(fit_clips, clips, config.clip_frames) if clips else {"accuracy": float("nan")}
        metrics[domain] = {"clips": len(clips), "speednet_accuracy": speednet_accuracy(model, clips) if clips else float("nan"),
                           "flow_baseline_accuracy": baseline["accuracy"]}
    return metrics


@task(name="plot-curves", cache_policy=NO_CACHE)
def plot_curves(history: list[dict], metrics: dict, path: str) -> str:
    """PNG of training loss and accuracy over steps, with held-out accuracies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(steps, [h["loss"] for h in history])
    left.set(xlabel="step", ylabel="BCE loss", title="training loss")
    right.plot(steps, [h["train_accuracy"] for h in history], label="train (augmented)")
    for domain, style in (("synthetic", "--"), ("real", ":")):
        value = metrics.get(domain, {}).get("speednet_accuracy")
        if value is not None and value == value:
            right.axhline(value, linestyle=style, color="C1" if domain == "synthetic" else "C2", label=f"held-out {domain}")
        baseline = metrics.get(domain, {}).get("flow_baseline_accuracy")
        if baseline is not None and baseline == baseline and domain == "synthetic":
            right.axhline(baseline, linestyle="-.", color="C3", label="mean-flow baseline (synthetic)")
    right.set(xlabel="step", ylabel="accuracy", ylim=(0.4, 1.0), title="natural vs 2x")
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(checkpoint: str, config: TrainConfig, split: DataSplit, metrics: dict, catalog_path: str,
                   models_dir: str) -> str:
    """Copy the checkpoint to the registry under its hash and add its `models` row; returns model_id."""
    from speednet.model import load_checkpoint

    model_id = content_hash(checkpoint)
    target = Path(models_dir) / f"{model_id}.pt"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as tmp:
            shutil.copyfile(checkpoint, tmp)
    _, model_config, _ = load_checkpoint(target)
    with catalog.writer(catalog_path) as con:
        catalog.upsert(con, "models", "model_id", [{
            "model_id": model_id, "checkpoint_path": str(target), "preset": config.preset,
            "config": json.dumps({"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config)}),
            "data_snapshot": split.snapshot, "train_videos": len(split.train), "val_videos": len(split.held_out),
            "metrics": json.dumps(metrics), "created_at": catalog.utc_now(),
        }])
    return model_id
