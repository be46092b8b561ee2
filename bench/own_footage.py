"""The README's "Your own footage" commands, run as written on a folder of camera-like clips, timed per hour of footage.

The folder holds the sample library's real camera clips and ffmpeg's moving test sources
at 10, 30 and 60 fps (camera-size frames, no sidecars). Each step is the exact ``speednet``
command of the README section, run in a fresh data folder; the bench prints its wall time
and that time scaled to one hour of footage (the cost of a step grows with the footage's
duration; the fixed start-up of each command is included, so short folders overstate it).

    OMP_WAIT_POLICY=passive .venv/bin/python bench/own_footage.py [--seconds 20] [--out var/bench/own-footage]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.ffmpeg import ffmpeg_exe  # noqa: E402
from speednet.media import probe_container  # noqa: E402
from speednet.samples import write_real_clips  # noqa: E402

# (name, ffmpeg lavfi source, size, fps): moving patterns at the frame rates users have.
SOURCES = (("street.mp4", "testsrc2", "640x360", 30), ("zoom.mp4", "mandelbrot", "480x270", 10),
           ("cells.mp4", "life", "480x270", 25), ("holiday/fast.mp4", "testsrc", "640x360", 60))


def write_footage(folder: Path, seconds: float) -> list[Path]:
    """The bench's footage folder: real clips plus generated camera-like ones (written once)."""
    files = write_real_clips(folder)
    for name, source, size, fps in SOURCES:
        path = folder / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                            "-i", f"{source}=size={size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
                            "-pix_fmt", "yuv420p", str(path)], check=True)
        files.append(path)
    return files


def readme_steps(footage: Path, query: Path) -> list[tuple[str, list[str]]]:
    """The README section's commands, in order."""
    return [
        ("ingest", ["speednet", "ingest", str(footage)]),
        ("train (fine-tune 200 steps)", ["speednet", "train", "--init-from", "reference", "--steps", "200",
                                         "--lr", "3e-4"]),
        ("score-library (with plots)", ["speednet", "score-library", "--plots"]),
        ("embed-library", ["speednet", "embed-library"]),
        ("search", ["speednet", "search", "--video", str(query), "--at", "5", "-k", "5", "--across-videos"]),
        ("render-speedups (2x, plots)", ["speednet", "render-speedups", "--rate", "2", "--plots"]),
        ("sql", ["speednet", "sql", "SELECT path, round(mean_speediness, 2) AS v, round(frac_slow_motion, 2) AS slow "
                                    "FROM speedupable_videos"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of each generated clip.")
    parser.add_argument("--out", type=Path, default=Path("var/bench/own-footage"))
    args = parser.parse_args()
    footage, home = args.out / "footage", args.out / "home"
    shutil.rmtree(home, ignore_errors=True)
    files = write_footage(footage, args.seconds)
    hours = sum(probe_container(f).duration_s or 0.0 for f in files) / 3600
    print(f"{len(files)} files, {hours * 3600:.0f} s of footage in {footage}", flush=True)
    env = {**os.environ, "SPEEDNET_HOME": str(home.resolve()), "OMP_WAIT_POLICY": "passive",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    results = []
    for label, command in readme_steps(footage, files[-1]):
        started = time.perf_counter()
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
        if run.returncode != 0:
            print("\n".join(tail))
            raise SystemExit(f"{label} failed (exit {run.returncode}): {' '.join(command)}")
        results.append({"step": label, "wall_s": round(wall, 1), "per_hour_min": round(wall / hours / 60, 1)})
        print(f"{label:30} {wall:7.1f} s   {wall / hours / 60:7.1f} min per hour of footage   | {tail[-1][:60]}",
              flush=True)
    (args.out / "own_footage.json").write_text(json.dumps({"footage_s": hours * 3600, "steps": results}, indent=1))


if __name__ == "__main__":
    main()
