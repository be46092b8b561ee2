"""Adaptive speedup: render throughput against a plain ffmpeg re-encode, and solver time at scale.

1. Render: a generated source (testsrc2, H.264) is rendered at overall speedup R_o by the
   path the render-video task takes (isolated decoder workers, started before the timing;
   frames streamed into ffmpeg), against ``ffmpeg -i SOURCE -c:v libx264`` with the same
   crf and preset. Both figures are output frames per second of wall time; the render
   writes 1/R_o of the frames but must decode them all.
2. Solver: ``optimal_speedup`` (ρ search over 9 thresholds, sparse solve, duration
   correction) on a 1-hour curve at 30 fps (108,000 frames × 11 speeds).

    OMP_WAIT_POLICY=passive .venv/bin/python bench/render.py [--seconds 20] [--size 1280x720] [--rate 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="speednet-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_TMP / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

import numpy as np  # noqa: E402

from speednet.ffmpeg import ffmpeg_exe  # noqa: E402
from speednet.isolation import run_isolated  # noqa: E402
from speednet.media import probe_container  # noqa: E402
from speednet.render import RenderConfig, open_source  # noqa: E402
from speednet.speedup import SmoothingSolver, SpeedupConfig, optimal_speedup  # noqa: E402
from tasks.render import RenderSettings, StoredScores, speedup_video  # noqa: E402

SPEEDS = 1.25 ** np.arange(11)


def p_natural_for(v: np.ndarray) -> np.ndarray:
    """P_i(t) of a model whose speediness is ``v``: sure far from V, unsure near it."""
    margin = np.log(np.maximum(v, 0.5))[None] - np.log(SPEEDS)[:, None]
    return (1 / (1 + np.exp(-8 * margin - 1))).astype(np.float32)


def varied_v(n: int, fps: float, seed: int = 0) -> np.ndarray:
    """Shots of 2–8 s, each natural, slow motion or sped up."""
    rng = np.random.default_rng(seed)
    v = np.empty(n)
    start = 0
    while start < n:
        length = int(rng.uniform(2, 8) * fps)
        v[start:start + length] = rng.choice([0.0, 1.0, 1.25, 2.0, 3.0, 5.0])
        start += length
    return v


def ffmpeg_reencode(source: Path, out: Path, crf: int, preset: str) -> float:
    started = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source),
                    "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", preset, str(out)],
                   check=True)
    return time.perf_counter() - started


def bench_render(seconds: float, size: str, fps: int, rate: float) -> None:
    source = _TMP / "source.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-g", str(2 * fps), str(source)], check=True)
    info = probe_container(source)
    n_frames, _, _ = run_isolated(open_source, str(source), info, path=str(source), timeout_s=120)  # workers up
    render = RenderConfig()
    ffmpeg_s = ffmpeg_reencode(source, _TMP / "reencode.mp4", render.crf, render.preset)
    scores = StoredScores(SPEEDS, p_natural_for(varied_v(n_frames, fps)), float(fps))
    started = time.perf_counter()
    result = speedup_video(str(source), scores, RenderSettings(SpeedupConfig(rate=rate), render), _TMP / "adaptive.mp4")
    render_s = time.perf_counter() - started
    plain_fps, render_fps = n_frames / ffmpeg_s, result.frames_written / render_s
    print(f"source: {size} @ {fps} fps, {n_frames} frames ({seconds:g} s), crf {render.crf}, preset {render.preset}, "
          f"{os.cpu_count()} cores")
    print(f"{'':<34}{'frames out':>11}{'wall s':>9}{'out frames/s':>14}")
    print(f"{'ffmpeg re-encode (1x)':<34}{n_frames:>11}{ffmpeg_s:>9.2f}{plain_fps:>14.1f}")
    print(f"{f'adaptive render ({rate:g}x overall)':<34}{result.frames_written:>11}{render_s:>9.2f}{render_fps:>14.1f}")
    print(f"{'render / re-encode':<34}{'':>11}{'':>9}{render_fps / plain_fps:>13.2f}x   "
          f"(source frames/s: {n_frames / render_s:.1f}; achieved rate {result.curve.achieved_rate:.4f})")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def bench_solver(hours: float, fps: float, repeats: int = 3) -> None:
    n = int(hours * 3600 * fps)
    p = p_natural_for(varied_v(n, fps, seed=1))
    config = SpeedupConfig(rate=3.0)
    best = min(_timed(lambda: optimal_speedup(p, SPEEDS, fps, config)) for _ in range(repeats))
    factor = min(_timed(lambda: SmoothingSolver(n, config.alpha, fps)) for _ in range(repeats))
    solver = SmoothingSolver(n, config.alpha, fps)
    solve = min(_timed(lambda: solver.solve(p[0])) for _ in range(repeats))
    curve = optimal_speedup(p, SPEEDS, fps, config)
    print(f"solver: {n} frames ({hours:g} h at {fps:g} fps) × {len(SPEEDS)} speeds, best of {repeats}")
    print(f"  optimal_speedup (9 ρ, solve, correction)  {best * 1000:8.1f} ms   "
          f"(achieved {curve.achieved_rate:.6f}x for 3x, ρ = {curve.rho:g})")
    print(f"  sparse LU factorisation of I + λDᵀD        {factor * 1000:8.1f} ms")
    print(f"  one solve with that factorisation          {solve * 1000:8.1f} ms")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the generated source")
    parser.add_argument("--size", default="1280x720", help="source frame size")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--rate", type=float, default=3.0, help="overall speedup R_o")
    args = parser.parse_args()
    try:
        bench_render(args.seconds, args.size, args.fps, args.rate)
        bench_solver(1.0, 30.0)
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
