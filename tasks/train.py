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
from speednet.timebase import MODEL_FPS
from storage import catalog, objects, paths
from storage.atomic import atomic_write
from storage.clip_dataset import ClipSource
from storage.shards import iter_clips
from tasks.progress import StepProgress
from tasks.trainer import FINAL_CHECKPOINT, TrainConfig, train, write_manifest


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


def _draw(video_id: str, seed: int) -> float:
    """A stable uniform draw in [0, 1) from the video's content hash and the split seed."""
    return int(hashlib.blake2b(f"{seed}:{video_id}".encode(), digest_size=8).hexdigest(), 16) / 2**64


DOMAINS = ("real", "synthetic")


@task(name="split-by-video", cache_policy=NO_CACHE)
def split_by_video(catalog_path: str, val_fraction: float, seed: int, domains: tuple[str, ...] = DOMAINS,
                   allow_empty: bool = False) -> DataSplit:
    """Assign whole videos to train or held-out, a fraction ``val_fraction`` of each domain apart.

    A video is held out when a stable hash of its video_id and ``seed`` falls below the
    fraction, so adding videos never moves one already placed; a domain of two or more
    videos keeps at least one on each side. Only ``domains`` ("real": the user's footage;
    "synthetic": clips with a physics sidecar) train; the others are all held out, for
    the cross-domain score. Synthetic clips whose sidecar says they are not at natural
    speed (half-2x, slow-motion variants) are evaluation material, never training data.
    ``allow_empty``: a run that trains on procedural scenes alone needs no training video.
    """
    unknown = sorted(set(domains) - set(DOMAINS))
    if unknown or not domains:
        raise ValueError(f"domains must be a non-empty subset of {DOMAINS}, got {list(domains)}")
    if allow_empty and not Path(catalog_path).exists():
        return DataSplit((), (), hashlib.blake2b(b"", digest_size=16).hexdigest())
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, path, shard_path, short_side_px, clip_frames FROM ingested_videos "
                           "ORDER BY video_id").fetchall()
    finally:
        con.close()
    if not rows and not allow_empty:
        raise ValueError(f"{catalog_path} has no ingested videos; run ingest-library first")
    by_domain: dict[str, list[tuple[VideoEntry, str]]] = {}
    for video_id, path, shard, short_side, clip_frames in rows:
        side = _sidecar(path)
        if (side or {}).get("variant", "natural") != "natural":
            continue
        entry = VideoEntry(video_id, path, shard, "synthetic" if side else "real", (side or {}).get("scene_type"))
        by_domain.setdefault(entry.domain, []).append((entry, f"{video_id}:{short_side}:{clip_frames};"))
    train_set, held_out, fingerprint = [], [], hashlib.blake2b(digest_size=16)
    for domain, members in sorted(by_domain.items()):
        members.sort(key=lambda m: _draw(m[0].video_id, seed))
        n_held = sum(_draw(m[0].video_id, seed) < val_fraction for m in members)
        if len(members) >= 2 and val_fraction > 0:
            n_held = min(max(n_held, 1), len(members) - 1)
        if domain not in domains:
            n_held = len(members)
        held_out += [entry for entry, _ in members[:n_held]]
        for entry, key in members[n_held:]:
            train_set.append(entry)
            fingerprint.update(key.encode())
    if not train_set and not allow_empty:
        counts = ", ".join(f"{len(m)} {d}" for d, m in sorted(by_domain.items())) or "no natural-speed videos"
        raise ValueError(f"{catalog_path}: nothing to train on in domains {list(domains)} ({counts} ingested); "
                         f"ingest videos of those domains, train on other domains, or add procedural scenes "
                         f"(procedural_share > 0)")
    return DataSplit(tuple(train_set), tuple(held_out), fingerprint.hexdigest())


def resolve_init(init_from: str | None, catalog_path: str) -> str | None:
    """The checkpoint file a run starts from: ``reference`` (the shipped model), a file, or a registered model_id."""
    if not init_from:
        return None
    if init_from == "reference":
        if not paths.REFERENCE_CHECKPOINT.is_file():
            raise FileNotFoundError(f"no reference model at {paths.REFERENCE_CHECKPOINT}; restore models/reference.pt "
                                    f"from git, or pass another checkpoint as init_from")
        return str(paths.REFERENCE_CHECKPOINT)
    if Path(init_from).expanduser().is_file():
        return str(Path(init_from).expanduser().resolve())
    if Path(catalog_path).exists() and "/" not in init_from:
        con = catalog.connect(catalog_path, read_only=True)
        try:
            rows = con.execute("SELECT checkpoint_path FROM models WHERE model_id LIKE ? || '%'", [init_from]).fetchall()
        finally:
            con.close()
        if len(rows) == 1:
            return str(objects.local_copy(rows[0][0]))  # a registry on object storage: fetched once
    raise FileNotFoundError(f"init_from {init_from!r} is neither 'reference', a checkpoint file, nor one registered "
                            f"model_id; pass one of those")


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
        return {"steps": config.steps, "history": history, "checkpoint": str(run_path / FINAL_CHECKPOINT)}
    with StepProgress(f"training {config.steps} steps", config.steps) as progress:
        done = {"step": 0}

        def on_log(entry: dict) -> None:
            progress.advance(entry["step"] - done["step"])
            done["step"] = entry["step"]
            line = (f"step {entry['step']:>5}  loss {entry['loss']:.4f}  train acc {entry['train_accuracy']:.3f}  "
                    f"{entry['seconds']:.0f} s")
            if "held_out" in entry:
                report = entry["held_out"]
                line += (f"  | fresh scenes: exact {report['exact']:.3f}, regular {report['regular']:.3f}, "
                         f"drops {report['drops']:.3f}, ranking {report['ranking']:.3f}")
            print(line, flush=True)

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
def evaluate_model(checkpoint: str, split: DataSplit, baseline_train_clips: int = 200, history: list | None = None) -> dict:
    """Held-out natural-vs-2x accuracy and AUC of SpeedNet and of the mean-flow baseline, per domain.

    The baseline's threshold is fitted on the training split's clips of the domain it is
    tested on, or on all training clips when that domain has none, or on fresh procedural
    scenes when no video trained (``flow_baseline_fit`` says which). ``fresh_scenes`` is
    the run's last held-out report on procedural scenes, when it made one.
    """
    from speednet.evaluation import compare_with_flow_baseline
    from speednet.model import load_checkpoint
    from speednet.synthetic.stream import EVALUATION_SEED, evaluation_clips
    from tasks.trainer import pick_device

    model, config, _ = load_checkpoint(checkpoint, map_location=pick_device())
    metrics = {}
    for domain in ("synthetic", "real"):
        clips = load_clips([e for e in split.held_out if e.domain == domain])
        if not clips:
            metrics[domain] = {"clips": 0, "speednet_accuracy": float("nan"), "flow_baseline_accuracy": float("nan")}
            continue
        fit, fit_on = load_clips([e for e in split.train if e.domain == domain], limit=baseline_train_clips), domain
        if not fit:
            fit, fit_on = load_clips(list(split.train), limit=baseline_train_clips), "all"
        if not fit:  # trained on procedural scenes only: fit on other fresh scenes than the evaluation's
            fit, fit_on = evaluation_clips(baseline_train_clips // 4, seed=EVALUATION_SEED + 1,
                                           size_px=config.input_size, clip_frames=3 * config.clip_frames), "procedural"
        metrics[domain] = {"clips": len(clips), **compare_with_flow_baseline(model, fit, clips), "flow_baseline_fit": fit_on}
    reports = [h["held_out"] for h in history or [] if "held_out" in h]
    if reports:
        metrics["fresh_scenes"] = reports[-1]
    return metrics


@task(name="plot-curves", cache_policy=NO_CACHE)
def plot_curves(history: list[dict], metrics: dict, path: str) -> str:
    """PNG of training loss, and of training and held-out accuracy over steps (the learning curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(steps, [h["loss"] for h in history])
    left.set(xlabel="step", ylabel="BCE loss", title="training loss")
    right.plot(steps, [h["train_accuracy"] for h in history], color="C0", alpha=0.6, label="train (sampled as trained)")
    evaluated = [(h["step"], h["held_out"]) for h in history if "held_out" in h]
    if evaluated:
        at = [s for s, _ in evaluated]
        right.plot(at, [r["exact"] for _, r in evaluated], "-o", ms=3, color="C1", label="fresh scenes, exact 1x vs 2x")
        right.plot(at, [r["regular"] for _, r in evaluated], "--", color="C4", label="fresh scenes, jittered rates")
        right.plot(at, [r["ranking"] for _, r in evaluated], ":", color="C5", label="fresh scenes, pair ranking")
    for domain, style in (("synthetic", "--"), ("real", ":")):
        value = metrics.get(domain, {}).get("speednet_accuracy")
        if value is not None and value == value:
            right.axhline(value, linestyle=style, color="C2" if domain == "synthetic" else "C6",
                          label=f"held-out library, {domain}")
        baseline = metrics.get(domain, {}).get("flow_baseline_accuracy")
        if baseline is not None and baseline == baseline and domain == "synthetic":
            right.axhline(baseline, linestyle="-.", color="C3", label="mean-flow baseline (synthetic)")
    right.set(xlabel="step", ylabel="accuracy", ylim=(0.4, 1.0), title="natural vs 2x")
    right.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(checkpoint: str, config: TrainConfig, split: DataSplit, metrics: dict, catalog_path: str,
                   models_dir: str, domains: list[str] | None = None) -> str:
    """Copy the checkpoint to the registry under its hash and add its `models` row; returns model_id."""
    from speednet.model import load_checkpoint

    model_id = content_hash(checkpoint)
    target = objects.join(models_dir, f"{model_id}.pt")  # a path, or a URI under an object-store data root
    if not objects.exists(target):
        with objects.staging_file(target) as tmp:
            shutil.copyfile(checkpoint, tmp)
    _, model_config, _ = load_checkpoint(checkpoint)
    with catalog.writer(catalog_path) as con:
        catalog.upsert(con, "models", "model_id", [{
            "model_id": model_id, "checkpoint_path": str(target), "preset": config.preset,
            "config": json.dumps({"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config),
                                  "domains": domains or list(DOMAINS),
                                  # natural speed as learnt: motion per frame at these rates (speednet.timebase)
                                  "model_fps": list(MODEL_FPS)}),
            "data_snapshot": split.snapshot, "train_videos": len(split.train), "val_videos": len(split.held_out),
            "metrics": json.dumps(metrics), "created_at": catalog.utc_now(),
        }])
    return model_id
