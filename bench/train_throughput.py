"""Training input pipeline vs training step, in clips/s, on the ingested library or on fresh procedural scenes.

The loader must outrun the step it feeds (target: loader/step ≥ 2), else training waits on
data. A clip here is one model input (same-batch: a batch of 32 holds 16 source clips,
each at both speeds). The loader is the one ``tasks.trainer.train`` builds; the step is
forward + backward + AdamW on one fixed batch of the same shape.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/train_throughput.py [--batch-size 32] [--workers 1]
    OMP_WAIT_POLICY=passive .venv/bin/python bench/train_throughput.py --source procedural --workers 1

``--source procedural`` times the procedural source: every clip a fresh physics scene,
drawn in the loader workers at the model's input size (no library needed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="speednet-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_TMP / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from speednet.model import PRESETS, build_speednet  # noqa: E402
from storage import paths  # noqa: E402
from storage.clip_dataset import ClipSource  # noqa: E402
from tasks.train import split_by_video  # noqa: E402
from tasks.trainer import TrainConfig, make_loader  # noqa: E402


def loader_rate(loader: DataLoader, batches: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    """Steady batches/s over ``batches``, and a batch to train on.

    Warm-up (worker start, shuffle-buffer fill) takes one prefetch depth plus one batch per
    worker, so the timing does not start on batches queued while the slowest worker filled
    up. The workers stop when the iterator goes on return and do not compete with the step.
    """
    warmup = ((loader.prefetch_factor or 0) + 1) * max(1, loader.num_workers)
    it = iter(loader)
    for _ in range(warmup):
        batch = next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - start), batch


def step_rate(config: TrainConfig, batch: tuple[torch.Tensor, torch.Tensor], warmup: int, steps: int) -> float:
    """Training steps/s on one fixed batch: the CPU path of ``tasks.trainer.train`` (no AMP)."""
    torch.manual_seed(config.seed)
    model = build_speednet(preset=config.preset)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    x, labels = batch

    def step() -> None:
        loss = F.binary_cross_entropy_with_logits(model(x).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-home", type=Path, default=paths.data_home(), help="ingested library (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="loader worker processes")
    parser.add_argument("--source", choices=("library", "procedural"), default="library")
    parser.add_argument("--sampler", default="mixed", help="temporal sampler of the batches (drops, regular, mixed)")
    parser.add_argument("--batches", type=int, default=20, help="loader batches timed after warm-up")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed after 2 warm-up steps")
    args = parser.parse_args()
    procedural = args.source == "procedural"
    config = TrainConfig(preset="cpu", batch_size=args.batch_size, loader_workers=args.workers,
                         procedural_share=1.0 if procedural else 0.0, temporal_sampler=args.sampler)
    if procedural:
        source = ClipSource({})
        print("source: fresh procedural scenes, drawn square at the input size")
    else:
        split = split_by_video.fn(str(paths.catalog_path(args.data_home)), 0.15, 0)
        source = split.source("train")
        print(f"library: {args.data_home} ({len(split.train)} training videos, {len(source.units())} row groups)")
    print(f"preset {config.preset}, batch {config.batch_size}, {config.loader_workers} loader workers, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores")

    loader = make_loader(config, source, PRESETS[config.preset], seed=config.seed)
    batches_per_s, batch = loader_rate(loader, args.batches)
    steps_per_s = step_rate(config, batch, warmup=2, steps=args.steps)

    loader_clips, step_clips = batches_per_s * config.batch_size, steps_per_s * config.batch_size
    print(f"{'':<24}{'clips/s':>10}{'s/batch':>10}")
    print(f"{f'loader ({config.loader_workers} workers)':<24}{loader_clips:>10.1f}{1 / batches_per_s:>10.3f}")
    print(f"{f'train step ({config.preset})':<24}{step_clips:>10.1f}{1 / steps_per_s:>10.3f}")
    print(f"{'loader / step':<24}{loader_clips / step_clips:>10.2f}   (target >= 2)")
    shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
