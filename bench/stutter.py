"""Does a model judge physics, or the stutter of resampling? P(sped up) by physics speed × frame pattern.

The scorer resamples a video at speeds 1.25^i (frame j = source frame floor(j·s)), which
leaves a stutter: at 1.56x the steps go 1, 2, 1, 2, … frames. A model that learnt the
stutter instead of the motion calls any footage so resampled sped up, and V(t) then misses
slow motion. This bench draws fresh scenes (a seed no training draws) at physics speed p
through the frame pattern of rate r — frame j at time floor(j·r)·p/r — and prints the mean
P(sped up) of each (p, r) cell for each checkpoint. A model that reads physics gives rows
that are flat across r: low for p ≤ 1.2, high for p ≥ 1.7.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/stutter.py [CHECKPOINT ...] [--scenes 80]

Default checkpoint: the shipped reference. ``spread`` is the mean over rows of (max − min)
across r: 0 for a model blind to the stutter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.evaluation import clip_logits  # noqa: E402
from speednet.model import load_checkpoint  # noqa: E402
from speednet.scoring import version_indices  # noqa: E402
from speednet.synthetic.stream import EVALUATION_SEED, evaluation_clips  # noqa: E402
from storage import paths  # noqa: E402

PHYSICS = (0.5, 1.0, 1.5625, 2.0)  # slow motion, natural, between, 2x
PATTERNS = (1.0, 1.25, 1.5625, 1.953125, 2.44140625)  # the scorer's first speeds
SEED = EVALUATION_SEED + 9


def pattern_grid(model, scenes: int, seed: int = SEED) -> np.ndarray:
    """Mean P(sped up), (len(PHYSICS), len(PATTERNS)), over ``scenes`` fresh library-shaped scenes.

    Every cell draws the same scenes from the same starts; frame j of cell (p, r) is the
    scorer's frame at speed r (``version_indices``) of footage at physics speed p / r.
    """
    T = model.config.clip_frames
    grid = np.zeros((len(PHYSICS), len(PATTERNS)))
    for i, physics in enumerate(PHYSICS):
        for j, rate in enumerate(PATTERNS):
            clips = evaluation_clips(scenes, seed=seed, size_px=model.config.input_size, clip_frames=3 * T,
                                     times=version_indices(0, T, rate) * (physics / rate))
            grid[i, j] = np.mean(expit(clip_logits(model, clips)))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, default=[paths.REFERENCE_CHECKPOINT])
    parser.add_argument("--scenes", type=int, default=80)
    args = parser.parse_args()
    for checkpoint in args.checkpoints:
        model, _, _ = load_checkpoint(checkpoint)
        grid = pattern_grid(model, args.scenes)
        print(f"\n{checkpoint}: mean P(sped up), {args.scenes} fresh scenes; rows physics speed p, columns frame pattern r")
        print("p \\ r   " + "".join(f"{rate:>7.2f}" for rate in PATTERNS))
        for physics, row in zip(PHYSICS, grid):
            print(f"{physics:<8.2f}" + "".join(f"{value:>7.2f}" for value in row))
        print(f"spread across r (mean over rows): {np.mean(grid.max(axis=1) - grid.min(axis=1)):.2f}")


if __name__ == "__main__":
    main()
