"""The SpeedNet training loop: plain, top to bottom, one process or many (torchrun DDP).

Single process: ``train(config, source, out_dir)``. Several (GPUs, or CPU with gloo)::

    torchrun --standalone --nproc_per_node=4 -m tasks.trainer --manifest run/manifest.json

where the manifest (written by the train-speednet flow) holds the config, the clip source
and the output folder. Every rank reads disjoint shard row groups; only rank 0 writes
checkpoints. No Prefect here, so torchrun workers start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from speednet.model import (MIN_INPUT_SIZE, SpeedNet, SpeedNetConfig, build_speednet, checkpoint_config,
                            load_weights_into, pair_centring_penalty, save_checkpoint)
from speednet.sampling import SPED_UP_RATE, AugmentConfig, make_batch
from speednet.synthetic.stream import SceneClipBatches, SceneStreamConfig
from storage.clip_dataset import ClipSource, ShardClipBatches, seed_worker

LAST_CHECKPOINT = "last.pt"
FINAL_CHECKPOINT = "final.pt"  # the weights a run delivers: SWA mean or EMA if on, BatchNorm statistics recalibrated if asked
# The curriculum's first sped-up rates: an easy 1x-vs-3.5x contrast, narrowed to the paper's U(1.7, 2.2).
CURRICULUM_START_RATE = (3.0, 4.0)
# Procedural frame shapes: "square" draws each scene for a square view at the input size
# (every object in view, half the pixels of 16:9); "library" draws the sample library's shapes.
PROCEDURAL_SHAPES = ("square", "library")
# Where a run's final BatchNorm statistics come from: its own training batches, or its fresh
# calibration scenes at exact 1x and 2x in whole library-shaped frames (what the scorer sees;
# on procedural runs this lifted held-out AUC from 0.92 to 0.94 on the same weights).
BN_SOURCES = ("training", "scenes")


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; stored in every checkpoint and in the model registry."""

    preset: str = "cpu"
    width: float | None = None  # channel multiplier of the backbone (None: the preset's)
    input_size: int | None = None  # short side of the model's input, px (None: init_from's, else the preset's)
    steps: int = 1200
    batch_size: int = 32  # items per step (same-batch: half as many clips, each at both speeds)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    loader_workers: int = 1  # one worker feeds a CPU step with room to spare; more only contend for the cores
    same_batch: bool = True
    temporal_aug: bool = True
    spatial_aug: bool = True
    temporal_sampler: str = "drops"  # "drops" (the paper's), "regular" or "mixed" (speednet.sampling)
    procedural_share: float = 0.0  # share of batches of fresh physics scenes, never repeated (the rest: the library)
    procedural_shape: str = "square"  # frame shapes of those scenes: a key of PROCEDURAL_SHAPES
    curriculum_steps: int = 0  # procedural sped-up rates narrow from CURRICULUM_START_RATE to U(1.7, 2.2) over these
    ema_decay: float = 0.0  # exponential moving average of the weights (0: off); the EMA is what a run delivers
    swa_from: int | None = None  # from this step on, deliver the uniform average of the weights instead (SWA; None: off)
    eval_every: int = 0  # held-out evaluation on fresh scenes every n steps (0: only at the end when eval_scenes > 0)
    eval_scenes: int = 0  # held-out scenes for those evaluations (speednet.synthetic.stream.evaluation_clips)
    bn_recalibration_batches: int = 0  # after training, re-estimate BatchNorm statistics on this many batches
    bn_source: str = "training"  # ... of training batches, or "scenes": all calibration scenes at exact 1x and 2x
    calibration_scenes: int = 0  # then fit the decision threshold on this many fresh exact-speed scenes (0: keep 0.5)
    init_from: str | None = None  # checkpoint whose weights start the run (fine-tuning); same architecture
    pair_centring: float | None = None  # weight of speednet.model.pair_centring_penalty beside the loss (None: off)

    def __post_init__(self):
        if not 0.0 <= self.procedural_share <= 1.0:
            raise ValueError(f"procedural_share must be in [0, 1], got {self.procedural_share}")
        if self.procedural_shape not in PROCEDURAL_SHAPES:
            raise ValueError(f"procedural_shape must be one of {sorted(PROCEDURAL_SHAPES)}, got {self.procedural_shape!r}")
        if self.width is not None and not self.width > 0:
            raise ValueError(f"width must be > 0 (or None for the preset's), got {self.width}")
        if self.input_size is not None and self.input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be >= {MIN_INPUT_SIZE} px (or None), got {self.input_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.swa_from is not None and not 0 <= self.swa_from < self.steps:
            raise ValueError(f"swa_from must be a step in [0, {self.steps}) (or None), got {self.swa_from}")
        if self.bn_source not in BN_SOURCES:
            raise ValueError(f"bn_source must be one of {BN_SOURCES}, got {self.bn_source!r}")
        if self.bn_source == "scenes" and self.bn_recalibration_batches and not self.calibration_scenes:
            raise ValueError("bn_source='scenes' re-estimates BatchNorm on the calibration scenes: set calibration_scenes > 0")
        if self.pair_centring is not None and (self.pair_centring < 0 or not self.same_batch):
            raise ValueError(f"pair_centring needs same_batch pairs and a weight >= 0, got {self.pair_centring}"
                             f"{'' if self.same_batch else ' with same_batch off'}")
        self.augment  # noqa: B018 -- validates the sampler

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(same_batch=self.same_batch, temporal_aug=self.temporal_aug, spatial_aug=self.spatial_aug,
                             temporal_sampler=self.temporal_sampler)


def curriculum_augment(step: int, config: TrainConfig) -> AugmentConfig:
    """The augmentation of procedural batches at ``step``: sped-up rates narrowing linearly to the paper's."""
    progress = min(1.0, step / config.curriculum_steps) if config.curriculum_steps else 1.0
    rate = tuple(a + progress * (b - a) for a, b in zip(CURRICULUM_START_RATE, SPED_UP_RATE))
    return dataclasses.replace(config.augment, sped_up_rate=rate)


def model_overrides(config: TrainConfig) -> dict:
    """The SpeedNetConfig fields a run sets over its preset: ``width`` if given, and the input size.

    A fine-tune keeps the input size its starting checkpoint learnt at unless told otherwise: the
    network judges speed partly in pixels per frame, so another size is another question.
    """
    overrides = {"width": config.width} if config.width else {}
    if config.input_size:
        overrides["input_size"] = config.input_size
    elif config.init_from:
        overrides["input_size"] = checkpoint_config(config.init_from).input_size
    return overrides


def pick_device() -> torch.device:
    """CUDA when present (trained in mixed precision), CPU otherwise: the same code either way."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 5% (a short run still ends with small steps)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class MixedBatches(IterableDataset):
    """Batches from ``first`` with probability ``share``, else from ``second`` (seeded per rank and worker)."""

    first: IterableDataset
    second: IterableDataset
    share: float
    seed: int
    rank: int = 0

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        rng = random.Random(f"mix-{self.seed}-{self.rank}-{info.id if info else 0}")
        first, second = iter(self.first), iter(self.second)
        while True:
            yield next(first) if rng.random() < self.share else next(second)


def make_loader(config: TrainConfig, source: ClipSource, model_config: SpeedNetConfig, *, seed: int,
                rank: int = 0, world_size: int = 1, start_step: int = 0) -> DataLoader:
    """The endless training-batch loader of one rank; batches are built (and augmented) in its workers.

    Batches come from the library's shards, from fresh procedural scenes, or from both in
    the ratio ``procedural_share``.
    """
    clips_per_batch = config.augment.clips_per_batch(config.batch_size)
    build = partial(make_batch, config=model_config, augment=config.augment)
    parts = []
    if config.procedural_share > 0:
        longest = max(SPED_UP_RATE[1], CURRICULUM_START_RATE[1] if config.curriculum_steps else 0.0)
        stream = SceneStreamConfig(size_px=model_config.input_size, sizes=_procedural_sizes(config, model_config),
                                   clip_frames=max(3 * model_config.clip_frames,
                                                   math.ceil((model_config.clip_frames - 1) * longest) + 2))
        parts.append(SceneClipBatches(
            clips_per_batch=clips_per_batch, make_batch=build, seed=config.seed, config=stream, rank=rank,
            first_stream=start_step * 4096, share=config.procedural_share, first_step=start_step,
            augment_at=partial(curriculum_augment, config=config) if config.curriculum_steps else None))
    if config.procedural_share < 1:
        parts.append(ShardClipBatches(source, clips_per_batch=clips_per_batch, make_batch=build, seed=seed, rank=rank,
                                      world_size=world_size))
    batches = parts[0] if len(parts) == 1 else MixedBatches(*parts, share=config.procedural_share, seed=seed, rank=rank)
    return DataLoader(batches, batch_size=None, num_workers=config.loader_workers, worker_init_fn=seed_worker,
                      persistent_workers=False, prefetch_factor=4 if config.loader_workers else None)


def _procedural_sizes(config: TrainConfig, model_config: SpeedNetConfig) -> tuple[tuple[int, int], ...]:
    if config.procedural_shape == "square":
        return ((model_config.input_size, model_config.input_size),)
    return SceneStreamConfig().sizes


def train(config: TrainConfig, source: ClipSource, out_dir: str | Path, *, resume: bool = False,
          rank: int = 0, world_size: int = 1, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train to ``config.steps``; returns the history and the path of the run's final checkpoint.

    ``out_dir/last.pt`` (every ``checkpoint_every`` steps) holds what a resume needs: with
    ``resume`` and that file present, the run continues from its step with its optimizer,
    EMA, SWA mean and history, so a killed run ends at the same step count as an uninterrupted
    one. ``out_dir/final.pt`` holds the delivered weights (the SWA mean or the EMA if on,
    BatchNorm statistics recalibrated if asked). Held-out evaluations on fresh scenes (every ``eval_every``
    steps and at the end) go into the history as entries with a ``held_out`` report.
    """
    out_dir = Path(out_dir)
    device = pick_device()
    torch.manual_seed(config.seed)
    model = build_speednet(preset=config.preset, **model_overrides(config)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step, history = 0, []
    checkpoint = out_dir / LAST_CHECKPOINT
    resuming = resume and checkpoint.exists()
    if not resuming and config.init_from:
        load_weights_into(model, config.init_from)  # ValueError naming both widths if the architecture differs
    # the EMA starts from the weights the run starts from (a resume then restores its own)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
        if config.ema_decay else None
    # stochastic weight averaging (Izmailov et al. 2018): an equal-weight mean of the weights after every step from swa_from
    swa = AveragedModel(model, multi_avg_fn=swa_mean_update, use_buffers=True) if config.swa_from is not None else None
    if resuming:
        extra = load_weights_into(model, checkpoint)
        optimizer.load_state_dict(extra["optimizer"])
        if ema is not None and "ema" in extra:
            ema.load_state_dict(extra["ema"])
        if swa is not None and "swa" in extra:
            swa.load_state_dict(extra["swa"])
        start_step, history = int(extra["step"]), list(extra["history"])
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # a resumed run draws fresh batches, not the first ones again
    loader = make_loader(config, source, model.config, seed=config.seed * 1_000_003 + start_step,
                         rank=rank, world_size=world_size, start_step=start_step)
    held_out = _evaluation_clips(config, model.config) if rank == 0 else []
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    model.train()
    window: list[tuple[float, float]] = []
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    batch_iter = iter(loader)
    for step in range(start_step, config.steps):
        x, labels = next(batch_iter)
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        with torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32, enabled=use_amp):
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        if config.pair_centring:
            loss = loss + config.pair_centring * pair_centring_penalty(logits.float())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        if swa is not None and step >= config.swa_from:
            swa.update_parameters(model)
        window.append((loss.item(), ((logits.detach() > 0).float() == labels).float().mean().item()))
        evaluate_now = bool(held_out) and config.eval_every > 0 and (step + 1) % config.eval_every == 0 \
            and step + 1 < config.steps  # the last step's evaluation comes after recalibration, below
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps or evaluate_now:
            losses, accs = zip(*window)
            entry = {"step": step + 1, "loss": float(np.mean(losses)), "train_accuracy": float(np.mean(accs)),
                     "lr": learning_rate(step, config), "seconds": time.perf_counter() - started}
            if evaluate_now:
                entry["held_out"] = _evaluate(_delivered(model, ema, swa), held_out)
                model.train()
            history.append(entry)
            window = []
            if on_log and rank == 0:
                on_log(entry)
        if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            save_checkpoint(checkpoint, model, extra={
                "step": step + 1, "optimizer": optimizer.state_dict(), "history": history,
                "train_config": dataclasses.asdict(config), **({"ema": ema.state_dict()} if ema is not None else {}),
                **({"swa": swa.state_dict()} if swa is not None else {})})

    delivered = _delivered(model, ema, swa)
    clips = []
    if rank == 0 and config.calibration_scenes:
        from speednet.synthetic.stream import calibration_clips

        clips = calibration_clips(config.calibration_scenes, run_seed=config.seed, clip_frames=3 * model.config.clip_frames,
                                  size_px=model.config.input_size)
    if config.bn_recalibration_batches:
        # Running statistics are an average over a drifting network (or, for SWA, over many
        # networks); re-estimate them on the final weights (the eval-mode/batch-statistics gap
        # was 0.67 vs 0.79 without this).
        if config.bn_source == "scenes":
            from speednet.evaluation import exact_version_batches

            batches = exact_version_batches(clips, model.config) if rank == 0 else iter(())
        else:
            batches = (x for x, _ in itertools.islice(batch_iter, config.bn_recalibration_batches))
        update_bn(batches, delivered, device)
    del batch_iter, loader
    final = out_dir / FINAL_CHECKPOINT
    if rank == 0:
        if clips:
            history[-1] = {**history[-1], "logit_shift": calibrate_threshold(delivered, clips)}
        if held_out:
            history[-1] = {**history[-1], "held_out": _evaluate(delivered, held_out)}
            if on_log:
                on_log(history[-1])
        save_checkpoint(final, delivered, extra={"step": config.steps, "history": history,
                                                 "train_config": dataclasses.asdict(config)})
    return {"steps": config.steps, "history": history, "checkpoint": str(final)}


def swa_mean_update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor | int) -> None:
    """SWA's running mean in place: ``averaged += (current - averaged) / (n + 1)``; integer buffers follow the model.

    torch's own foreach update refuses integer tensors on CUDA (BatchNorm's batch counter is
    one; ``AveragedModel`` groups tensors by dtype, so a list is all float or all integer).
    """
    if not averaged[0].is_floating_point():
        torch._foreach_copy_(averaged, current)
        return
    torch._foreach_lerp_(averaged, current, 1.0 / (float(num_averaged) + 1.0))


def _delivered(model: SpeedNet, ema: AveragedModel | None, swa: AveragedModel | None) -> SpeedNet:
    """The weights a run evaluates and delivers: the SWA mean once it has begun, else the EMA, else the raw weights."""
    if swa is not None and int(swa.n_averaged) > 0:
        return swa.module
    return ema.module if ema is not None else model


# Settings that act only after the last step: a finished run asked again with other values
# re-does only its ending (from last.pt), so they are not part of a run's identity.
FINISHING_FIELDS = ("calibration_scenes", "bn_source")
# Settings added after runs were made with this code, None when off.
LATER_FIELDS = ("width", "swa_from", "input_size", "pair_centring")


def run_identity(config: TrainConfig) -> str:
    """``repr(config)`` without ``FINISHING_FIELDS``: what decides which run folder a training resumes.

    Settings added later (``LATER_FIELDS``) are left out while off, so runs from before they existed keep their folder.
    """
    kept = [f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config)
            if f.name not in FINISHING_FIELDS and not (f.name in LATER_FIELDS and getattr(config, f.name) is None)]
    return f"{type(config).__name__}({', '.join(kept)})"


def calibrate_threshold(model: SpeedNet, clips: list[np.ndarray]) -> float:
    """Move the model's decision threshold to the logit that best splits ``clips`` at exact 1x from 2x; returns the shift.

    A run fits it on ``calibration_scenes`` fresh scenes of its calibration stream (never a
    training or evaluation scene) and folds it into the classifier's bias, so P = 0.5 is the
    calibrated cut for every consumer of the checkpoint (scores, segments, ρ).
    """
    from speednet.evaluation import decision_threshold

    shift = decision_threshold(model, clips)
    with torch.no_grad():
        model.head[-1].bias -= shift
    return float(shift)


def _evaluation_clips(config: TrainConfig, model_config: SpeedNetConfig) -> list[np.ndarray]:
    """The fixed held-out scenes of the run's curve (none unless ``eval_scenes``)."""
    from speednet.synthetic.stream import evaluation_clips

    if not config.eval_scenes:
        return []
    return evaluation_clips(config.eval_scenes, size_px=model_config.input_size,
                            clip_frames=3 * model_config.clip_frames)


def _evaluate(model: SpeedNet, clips: list[np.ndarray]) -> dict:
    from speednet.evaluation import sampler_report

    return sampler_report(model, clips)


def write_manifest(path: str | Path, config: TrainConfig, source: ClipSource, out_dir: str | Path, resume: bool) -> Path:
    """The JSON a torchrun launch reads: config, clip source, output folder."""
    path = Path(path)
    path.write_text(json.dumps({
        "config": dataclasses.asdict(config), "out_dir": str(out_dir), "resume": resume,
        "videos_by_shard": {shard: sorted(ids) for shard, ids in source.videos_by_shard.items()},
    }))
    return path


def main() -> None:
    """torchrun entry point: one process per rank, gloo on CPU, nccl on GPUs."""
    parser = argparse.ArgumentParser(description="SpeedNet training worker (launched by torchrun)")
    parser.add_argument("--manifest", required=True, type=Path)
    args = parser.parse_args()
    manifest = json.loads(args.manifest.read_text())
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    config = TrainConfig(**manifest["config"])
    source = ClipSource({shard: frozenset(ids) for shard, ids in manifest["videos_by_shard"].items()})
    result = train(config, source, manifest["out_dir"], resume=manifest["resume"], rank=rank, world_size=world_size)
    if rank == 0:
        (Path(manifest["out_dir"]) / "history.json").write_text(json.dumps(result["history"]))
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
