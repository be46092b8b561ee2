"""Do the `segments` a model wrote say what the synthetic variants really are?

The sample library's variants carry ground truth in their sidecars: a slow-motion clip
shows physics at 0.5x throughout, a half-2x clip at 2x from its middle on, a natural
scene at 1x. For every scored synthetic clip this reads the `segments` rows of one model
(default: the latest) and reports three shares of frames:

- slow-motion frames labelled `slow_motion`   (target ≥ 80%)
- 2x frames of half-2x clips labelled `sped_up` (target ≥ 80%)
- natural scenes' frames labelled either        (target ≤ 20%)

    .venv/bin/python bench/segment_validity.py [--catalog var/catalog.duckdb] [--model MODEL_ID]

Run it after the main command (which scores the sample library with its model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import catalog, paths  # noqa: E402


def truth_speeds(sidecar: dict) -> np.ndarray:
    """Physics speed shown by each frame of a synthetic clip (1 natural, 2 sped up, 0.5 slow motion)."""
    speeds = np.empty(sidecar["n_frames"])
    for segment in sorted(sidecar["segments"], key=lambda s: s["start_frame"]):
        speeds[segment["start_frame"]:] = segment["speed"]
    return speeds


def frame_labels(rows: list[tuple[float, float, str]], n_frames: int, fps: float) -> np.ndarray:
    """The segment kind of every frame (frame i at i/fps), '' where no segment covers it."""
    t = np.arange(n_frames) / fps
    labels = np.full(n_frames, "", dtype=object)
    for start_s, end_s, kind in rows:
        labels[(t >= start_s - 1e-9) & (t < end_s - 1e-9)] = kind
    return labels


def shares(con, model_id: str) -> dict:
    """The three shares (and frame counts) over every scored synthetic clip of the catalog."""
    videos = con.execute("SELECT v.video_id, v.path FROM video_speediness v WHERE v.model_id = ? AND v.status = 'scored'",
                         [model_id]).fetchall()
    counts = {"slow_motion": [0, 0], "sped_up": [0, 0], "natural": [0, 0]}
    for video_id, path in videos:
        sidecar_path = Path(path).with_suffix(".json")
        if not sidecar_path.exists():
            continue
        sidecar = json.loads(sidecar_path.read_text())
        rows = con.execute("SELECT start_s, end_s, kind FROM segments WHERE video_id = ? AND model_id = ?",
                           [video_id, model_id]).fetchall()
        labels = frame_labels(rows, sidecar["n_frames"], sidecar["fps"])
        speeds = truth_speeds(sidecar)
        variant = sidecar["variant"]
        if variant == "slowmo":
            selected, hit = speeds == 0.5, labels == "slow_motion"
            key = "slow_motion"
        elif variant == "half2x":
            selected, hit = speeds == 2.0, labels == "sped_up"
            key = "sped_up"
        elif variant == "natural":
            selected, hit = np.ones(len(speeds), bool), (labels == "slow_motion") | (labels == "sped_up")
            key = "natural"
        else:
            continue
        counts[key][0] += int(np.sum(hit & selected))
        counts[key][1] += int(np.sum(selected))
    return {key: {"share": hits / total if total else float("nan"), "frames": total} for key, (hits, total) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=paths.catalog_path())
    parser.add_argument("--model", default=None, help="model_id (default: the latest registered)")
    args = parser.parse_args()
    con = catalog.connect(args.catalog, read_only=True)
    try:
        model_id = args.model or con.execute("SELECT model_id FROM latest_model").fetchone()[0]
        result = shares(con, model_id)
    finally:
        con.close()
    print(f"model {model_id[:12]}, catalog {args.catalog}")
    print(f"  slow-motion frames labelled slow_motion : {result['slow_motion']['share']:.3f}  "
          f"({result['slow_motion']['frames']} frames; target >= 0.80)")
    print(f"  2x frames of half-2x labelled sped_up   : {result['sped_up']['share']:.3f}  "
          f"({result['sped_up']['frames']} frames; target >= 0.80)")
    print(f"  natural frames labelled either          : {result['natural']['share']:.3f}  "
          f"({result['natural']['frames']} frames; target <= 0.20)")


if __name__ == "__main__":
    main()
