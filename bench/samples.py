"""Benchmark the synthetic library: how fast it is written, and whether pixel speed gives 2x away.

    .venv/bin/python bench/samples.py                 # demo size: 200 clips (+20 variants) of 5–10 s
    .venv/bin/python bench/samples.py --count 40 --keep /tmp/lib

Prints generation speed (clips, frames, wall time, clips/s, frames/s), then the
mean-optical-flow baseline on natural clips vs their 2x versions (every second
frame): AUC of the magnitude as a classifier (target ≤ 0.65), the quantiles of both
distributions and their overlap, and the accuracy of a threshold fit on half the
clips and tested on the other half.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from speednet.optical_flow import SHORT_SIDE_PX, auc, fit_threshold, mean_flow_magnitude
from speednet.synthetic import write_synthetic_library


def natural_and_2x_magnitudes(path: str, n_frames: int, width: int, height: int, seed: int,
                              window_frames: int = 16, short_side_px: int = SHORT_SIDE_PX) -> tuple[float, float]:
    """Mean flow magnitude of one `window_frames`-pair window at 1x and of the 2x window starting at the same frame."""
    import decord

    scale = short_side_px / min(width, height)
    w, h = int(round(width * scale / 2)) * 2, int(round(height * scale / 2)) * 2
    span = 2 * window_frames + 1
    start = int(np.random.default_rng(seed).integers(0, max(n_frames - span, 0) + 1))
    reader = decord.VideoReader(path, width=w, height=h, num_threads=1)
    frames = reader.get_batch(list(range(start, min(start + span, n_frames)))).asnumpy()
    return (mean_flow_magnitude(frames[:window_frames + 1], short_side_px=None),
            mean_flow_magnitude(frames[::2], short_side_px=None))


def overlap_coefficient(a: np.ndarray, b: np.ndarray, bins: int = 30) -> float:
    """Shared area of the two histograms (log-spaced bins): 1 = identical distributions, 0 = disjoint."""
    edges = np.geomspace(min(a.min(), b.min()) * 0.999, max(a.max(), b.max()) * 1.001, bins + 1)
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    return float(np.minimum(ha / len(a), hb / len(b)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="natural clips (variants are added on top)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--window-frames", type=int, default=16, help="frame pairs per clip for the flow baseline")
    parser.add_argument("--keep", type=Path, default=None, help="write the library here and keep it (default: a temp dir)")
    args = parser.parse_args()

    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="speednet-samples-"))
    try:
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        paths = write_synthetic_library(out_dir, count=args.count, seed=args.seed, workers=args.workers)
        wall_s = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time of the workers and their ffmpeg encoders: what the run costs whatever else the machine is doing.
        cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        load = os.getloadavg()[0]
        index = [json.loads(line) for line in (out_dir / "scenes.jsonl").read_text().splitlines()]
        frames = sum(r["n_frames"] for r in index)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"generation: {len(paths)} clips ({args.count} natural + {len(paths) - args.count} variants), "
              f"{frames} frames, {sum(r['duration_s'] for r in index):.0f} s of video, {size_mb:.1f} MB, "
              f"workers={args.workers or os.cpu_count()}")
        print(f"  wall {wall_s:.1f} s  |  {len(paths) / wall_s:.2f} clips/s  |  {frames / wall_s:.0f} frames/s")
        print(f"  CPU {cpu_s:.1f} s in workers + encoders ({1000 * cpu_s / frames:.2f} ms/frame); "
              f"load average at the end {load:.1f} (other processes on the machine slow the wall time)")

        natural = [r for r in index if r["variant"] == "natural"]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers or os.cpu_count()) as pool:
            futures = [pool.submit(natural_and_2x_magnitudes, str(out_dir / r["video"]), r["n_frames"], r["width"],
                                   r["height"], r["index"], args.window_frames) for r in natural]
            mags = np.array([f.result() for f in futures])
        flow_s = time.perf_counter() - t0
        m1, m2 = mags[:, 0], mags[:, 1]
        scores = np.concatenate([m1, m2])
        labels = np.concatenate([np.zeros(len(m1), bool), np.ones(len(m2), bool)])
        print(f"\nmean-flow baseline on {len(natural)} natural clips vs their 2x versions "
              f"({args.window_frames} frame pairs each, flow at short side {SHORT_SIDE_PX} px, {flow_s:.1f} s)")
        print(f"  AUC of mean flow magnitude, 2x vs 1x: {auc(scores, labels):.3f}   (target <= 0.65; 0.5 = no information)")
        qs = (5, 25, 50, 75, 95)
        print("  quantiles (px/frame)   " + "  ".join(f"p{q:<5d}" for q in qs))
        print("    natural 1x           " + "  ".join(f"{v:6.3f}" for v in np.percentile(m1, qs)))
        print("    sped up 2x           " + "  ".join(f"{v:6.3f}" for v in np.percentile(m2, qs)))
        print(f"  overlap coefficient of the two distributions: {overlap_coefficient(m1, m2):.2f}   "
              f"(median per-clip ratio 2x/1x: {np.median(m2 / np.maximum(m1, 1e-9)):.2f})")
        train = np.arange(len(m1)) % 2 == 0
        clf = fit_threshold(np.concatenate([m1[train], m2[train]]), np.repeat([False, True], train.sum()))
        test_acc = clf.accuracy(np.concatenate([m1[~train], m2[~train]]), np.repeat([False, True], (~train).sum()))
        print(f"  threshold classifier (fit on even clips, tested on odd): threshold {clf.threshold:.3f}, "
              f"test accuracy {test_acc:.3f}")
        types = sorted({r["scene_type"] for r in natural})
        per_type = []
        for t in types:
            sel = np.array([r["scene_type"] == t for r in natural])
            per_type.append(f"{t} {auc(np.concatenate([m1[sel], m2[sel]]), np.repeat([False, True], sel.sum())):.2f} (n={sel.sum()})")
        print("  AUC per scene type: " + ", ".join(per_type))
    finally:
        if args.keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
