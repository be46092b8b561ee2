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
import json
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from speednet.model import SpeedNetConfig, build_speednet, load_weights_into, save_checkpoint
from speednet.sampling import AugmentConfig, make_batch
from storage.clip_dataset import ClipSource, ShardClipBatches, seed_worker

LAST_CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; stored in every checkpoint and in the model registry."""

    preset: str = "cpu"
    steps: int = 1200
    batch_size: int = 32  # items per step (same-batch: half as many clips, each at both speeds)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    loader_workers: int = 2
    same_batch: bool = True
    temporal_aug: bool = True
    spatial_aug: bool = True

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(same_batch=self.same_batch, temporal_aug=self.temporal_aug, spatial_aug=self.spatial_aug)


def pick_device() -> torch.device:
    """CUDA when present (trained in mixed precision), CPU otherwise: the same code either way."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 5% (a short run still ends with small steps)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_loader(config: TrainConfig, source: ClipSource, model_config: SpeedNetConfig, *, seed: int,
                rank: int = 0, world_size: int = 1) -> DataLoader:
    """The endless training-batch loader of one rank; batches are built (and augmented) in its workers."""
    batches = ShardClipBatches(
        source, clips_per_batch=config.augment.clips_per_batch(config.batch_size),
        make_batch=partial(make_batch, config=model_config, augment=config.augment),
        seed=seed, rank=rank, world_size=world_size)
    return DataLoader(batches, batch_size=None, num_workers=config.loader_workers, worker_init_fn=seed_worker,
                      persistent_workers=False, prefetch_factor=4 if config.loader_workers else None)


def train(config: TrainConfig, source: ClipSource, out_dir: str | Path, *, resume: bool = False,
          rank: int = 0, world_size: int = 1, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train to ``config.steps``, checkpointing to ``out_dir/last.pt``; returns the loss/accuracy history.

    With ``resume`` and a checkpoint present, continues from its step with its optimizer
    state and history, so a killed run ends at the same step count as an uninterrupted one.
    """
    out_dir = Path(out_dir)
    device = pick_device()
    torch.manual_seed(config.seed)
    model = build_speednet(preset=config.preset).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step, history = 0, []
    checkpoint = out_dir / LAST_CHECKPOINT
    if resume and checkpoint.exists():
        extra = load_weights_into(model, checkpoint)
        optimizer.load_state_dict(extra["optimizer"])
        start_step, history = int(extra["step"]), list(extra["history"])
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # a resumed run draws fresh batches, not the first ones again
    loader = make_loader(config, source, model.config, seed=config.seed * 1_000_003 + start_step,
                         rank=rank, world_size=world_size)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    model.train()
    window: list[tuple[float, float]] = []
    started = time.perf_counter()
    batch_iter = iter(loader)
    for step in range(start_step, config.steps):
        x, labels = next(batch_iter)
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        with torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32, enabled=use_amp):
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        window.append((loss.item(), ((logits.detach() > 0).float() == labels).float().mean().item()))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            losses, accs = zip(*window)
            entry = {"step": step + 1, "loss": float(np.mean(losses)), "train_accuracy": float(np.mean(accs)),
                     "lr": learning_rate(step, config), "seconds": time.perf_counter() - started}
            history.append(entry)
            window = []
            if on_log and rank == 0:
                on_log(entry)
        if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            save_checkpoint(checkpoint, model, extra={"step": step + 1, "optimizer": optimizer.state_dict(),
                                                      "history": history, "train_config": dataclasses.asdict(config)})
    del batch_iter, loader
    return {"steps": config.steps, "history": history, "checkpoint": str(checkpoint)}


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
