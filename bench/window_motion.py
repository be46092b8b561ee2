"""How many training windows of the synthetic scenes show any motion at all.

A window in which nothing moves carries no speed cue, so its label cannot be learned; this
bounds the accuracy any model could reach. Uses the generator's ground truth (object
tracks in frame pixels, camera pan and shake included), not the video: for every 48-frame
clip of every natural scene, the path length of the fastest object over the 16 frames the
network sees (1x: frames 0–15; 2x: every other frame of 0–31), at the network's input
scale (short side 64 px).

    .venv/bin/python bench/window_motion.py [--library DIR] [--input-px 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from speednet.evaluation import speed_versions  # noqa: E402
from speednet.model import PRESETS  # noqa: E402
from speednet.synthetic.library import object_tracks_px  # noqa: E402
from speednet.synthetic.scenes import SceneParams  # noqa: E402
from storage import paths  # noqa: E402
from tasks.ingest_params import IngestParams  # noqa: E402

CLIP, T = IngestParams().clip_frames, PRESETS["cpu"].clip_frames


def window_paths_px(scene: SceneParams, input_px: int) -> dict[str, list[float]]:
    """Per speed, the fastest object's path length (px at input scale) in each clip's window."""
    tracks = object_tracks_px(scene)
    scale = input_px / min(scene.width, scene.height)
    out: dict[str, list[float]] = {"1x": [], "2x": []}
    for start in range(0, scene.n_frames - CLIP + 1, CLIP):
        for speed, frames in zip(("1x", "2x"), speed_versions(np.arange(start, start + CLIP), T)):
            out[speed].append(max(float(np.hypot(np.diff(tr["x_px"][frames]), np.diff(tr["y_px"][frames])).sum()) * scale
                                  for tr in tracks))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=paths.samples_dir() / "synthetic")
    parser.add_argument("--input-px", type=int, default=PRESETS["cpu"].input_size)
    args = parser.parse_args()
    sidecars = sorted(args.library.glob("scene-*.json"))
    if not sidecars:
        sys.exit(f"no scene-*.json sidecars under {args.library}; write the library with `speednet samples DIR`")
    by_speed: dict[str, list[float]] = defaultdict(list)
    by_kind: dict[tuple[str, str], list[float]] = defaultdict(list)
    for sidecar in sidecars:
        scene = SceneParams.from_dict(json.loads(sidecar.read_text()))
        for speed, lengths in window_paths_px(scene, args.input_px).items():
            by_speed[speed] += lengths
            by_kind[(scene.scene_type, speed)] += lengths
    print(f"{len(sidecars)} natural scenes under {args.library}; path length of the fastest object over the "
          f"{T} frames the network sees, px at {args.input_px} px short side")
    print(f"{'':>18} {'windows':>8} {'p10':>6} {'p50':>6} {'< 1 px':>7} {'< 2 px':>7}")
    rows = [(speed, v) for speed, v in by_speed.items()] + [(f"{k} {s}", v) for (k, s), v in sorted(by_kind.items())]
    for label, values in rows:
        v = np.asarray(values)
        print(f"{label:>18} {len(v):>8} {np.percentile(v, 10):>6.1f} {np.percentile(v, 50):>6.1f} "
              f"{(v < 1).mean():>7.1%} {(v < 2).mean():>7.1%}")


if __name__ == "__main__":
    main()
