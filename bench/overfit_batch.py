"""Can the CPU preset fit one fixed batch? Train-mode vs eval-mode accuracy over steps.

A diagnostic for "the model does not learn": 16 synthetic training clips at exact 1x and 2x
(no augmentation, same batch), AdamW at a fixed lr, the same batch every step. If train-mode
accuracy reaches 1.0 the optimisation works and the problem is generalisation; the gap to
eval-mode accuracy (BatchNorm running statistics) shows how far evaluation lags.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/overfit_batch.py [--steps 120] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.model import build_speednet  # noqa: E402
from speednet.sampling import AugmentConfig, make_batch  # noqa: E402
from storage import paths  # noqa: E402
from tasks.train import load_clips, split_by_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-home", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    home = args.data_home or paths.data_home()
    split = split_by_video.fn(str(paths.catalog_path(home)), 0.15, 0)
    clips = load_clips([e for e in split.train if e.domain == "synthetic"][:40], limit=40)[::2][:16]
    model = build_speednet(preset="cpu")
    x, y = make_batch(clips, model.config, np.random.default_rng(0),
                      AugmentConfig(same_batch=True, temporal_aug=False, spatial_aug=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    started = time.perf_counter()
    print(f"{len(clips)} clips × 2 speeds, lr {args.lr}")
    print("step   loss   train-mode acc   eval-mode acc")
    for step in range(1, args.steps + 1):
        model.train()
        logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                eval_acc = ((model(x) > 0).float() == y).float().mean().item()
            train_acc = ((logits > 0).float() == y).float().mean().item()
            print(f"{step:4d} {loss.item():7.4f} {train_acc:14.3f} {eval_acc:15.3f}   ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
