"""How much of a held-out clip's motion a centre-square crop would keep (why evaluation uses whole frames).

For each held-out synthetic clip of the ingested library: per-pixel motion energy (summed
absolute grey-level differences over its first 32 frames, the noise floor removed), and the
share of it inside the centre square. A share near 0 means the clip's moving objects sit
outside the square, so a crop-based evaluation would ask the model about a still picture.

    .venv/bin/python bench/crop_motion.py [--data-home var]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import paths  # noqa: E402
from tasks.train import load_clips, split_by_video  # noqa: E402


def centre_share(clip: np.ndarray, frames: int = 32) -> float:
    """Share of the clip's above-noise motion energy that lies inside its centre square."""
    grey = clip[:frames].astype(np.float32).mean(-1)
    energy = np.abs(np.diff(grey, axis=0)).sum(0)
    energy = np.where(energy > 3 * np.median(energy) + 1, energy, 0)  # sensor noise and flicker out
    h, w = energy.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return float(energy[top:top + side, left:left + side].sum() / max(energy.sum(), 1e-6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-home", type=Path, default=None, help="state folder with an ingested library")
    args = parser.parse_args()
    home = args.data_home or paths.data_home()
    split = split_by_video.fn(str(paths.catalog_path(home)), 0.15, 0)
    clips = load_clips([e for e in split.held_out if e.domain == "synthetic"])
    shares = np.array([centre_share(c) for c in clips])
    print(f"{len(clips)} held-out synthetic clips, frames {clips[0].shape[1]}×{clips[0].shape[2]}")
    print("share of motion inside the centre square, quantiles p10/p25/p50/p75/p90:",
          " / ".join(f"{q:.2f}" for q in np.quantile(shares, [0.1, 0.25, 0.5, 0.75, 0.9])))
    print(f"clips keeping < 20% of their motion: {np.mean(shares < 0.2):.0%}; none of it: {np.mean(shares == 0):.0%}; "
          f"< 50%: {np.mean(shares < 0.5):.0%}")


if __name__ == "__main__":
    main()
