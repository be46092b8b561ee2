"""How a run's ending moves a trained model: weight averaging, BatchNorm source, threshold, flip averaging.

The same weights scored on fresh physics scenes (exact 1x vs 2x, whole frames, in memory,
``EVALUATION_SEED``), finished in several ways:

- as delivered (the checkpoint's own BatchNorm statistics and cut);
- BatchNorm statistics re-estimated on the exact 1x and 2x versions of fresh calibration
  scenes (what ``TrainConfig.bn_source="scenes"`` does);
- with ``--average``: the equal-weight mean of several checkpoints of one architecture
  (e.g. a model and a fine-tune of it), then the same re-estimate;
- each also with horizontal-flip averaging of the logits (two passes; not what the scorer does).

Every row fits its cut on the calibration scenes (the run's calibration stream of
``--run-seed``) and reports accuracy at the logit 0 and at that cut, AUC and pair ranking.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/finishing.py models/reference.pt [other.pt ...] [--average]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.evaluation import decision_threshold, exact_version_batches, speednet_scores  # noqa: E402
from speednet.model import SpeedNet, load_checkpoint  # noqa: E402
from speednet.optical_flow import auc  # noqa: E402
from speednet.synthetic.stream import calibration_clips, evaluation_clips  # noqa: E402


class FlipAveraged(torch.nn.Module):
    """A SpeedNet whose logit is the mean of its logits on the clip and on its mirror image."""

    def __init__(self, model: SpeedNet):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(torch.flip(x, dims=[-1]))) / 2


def averaged(models: list[SpeedNet]) -> SpeedNet:
    """The equal-weight mean of the floating-point weights and buffers of same-architecture models."""
    mean = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    mean.load_state_dict({k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v
                          for k, v in states[0].items()})
    return mean


def bn_on_scenes(model: SpeedNet, clips: list[np.ndarray]) -> SpeedNet:
    """A copy of ``model`` with BatchNorm statistics re-estimated on the exact 1x/2x versions of ``clips``."""
    copy_ = copy.deepcopy(model)
    update_bn(exact_version_batches(clips, copy_.config), copy_)
    return copy_.eval()


def row(name: str, model: torch.nn.Module, calibration: list[np.ndarray], test: list[np.ndarray]) -> dict:
    """Accuracy at logit 0 and at the cut fitted on ``calibration``, AUC and ranking on ``test``."""
    cut = decision_threshold(model, calibration)
    natural, fast = speednet_scores(model, test, logits=True)
    labels = np.repeat([False, True], len(test))
    result = {"name": name, "acc_at_0": float(np.mean(np.r_[natural < 0, fast >= 0])), "cut": cut,
              "acc_at_cut": float(np.mean(np.r_[natural < cut, fast >= cut])),
              "auc": auc(np.r_[natural, fast], labels), "ranking": float(np.mean(fast > natural))}
    print(f"{name:62}{result['acc_at_0']:>8.3f}{result['acc_at_cut']:>8.3f}{cut:>+7.2f}{result['auc']:>7.3f}"
          f"{result['ranking']:>8.3f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--average", action="store_true", help="Also score the mean of the checkpoints' weights.")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--calibration-scenes", type=int, default=200)
    parser.add_argument("--run-seed", type=int, default=0, help="Whose calibration stream fits the cuts.")
    parser.add_argument("--validation-seed", type=int, default=None,
                        help="Score on this seed's calibration stream instead of the evaluation scenes "
                             "(to choose between models without reading the evaluation scenes).")
    args = parser.parse_args()
    if args.validation_seed is not None and args.validation_seed == args.run_seed:
        parser.error("--validation-seed must differ from --run-seed: the cut would be fitted on the scenes it is tested on")
    models = [load_checkpoint(path)[0] for path in args.checkpoints]
    config = models[0].config
    started = time.perf_counter()
    shape = {"size_px": config.input_size, "clip_frames": 3 * config.clip_frames}
    if args.validation_seed is None:
        test, source = evaluation_clips(args.scenes, **shape), "evaluation seed"
    else:
        test = calibration_clips(args.scenes, run_seed=args.validation_seed, **shape)
        source = f"validation: calibration stream of seed {args.validation_seed}"
    calibration = calibration_clips(args.calibration_scenes, run_seed=args.run_seed, **shape)
    print(f"{len(test)} fresh scenes ({source}), {len(calibration)} calibration scenes "
          f"({time.perf_counter() - started:.0f} s)\n")
    print(f"{'':62}{'acc@0':>8}{'acc@cut':>8}{'cut':>7}{'AUC':>7}{'ranking':>8}")
    candidates = [(path.name, model) for path, model in zip(args.checkpoints, models)]
    if args.average and len(models) > 1:
        candidates.append(("mean of " + " + ".join(p.name for p in args.checkpoints), averaged(models)))
    for name, model in candidates:
        if not name.startswith("mean of"):
            row(f"{name}, as delivered", model, calibration, test)
        rescaled = bn_on_scenes(model, calibration)
        row(f"{name}, BatchNorm on scenes", rescaled, calibration, test)
        row(f"{name}, BatchNorm on scenes, flip-averaged", FlipAveraged(rescaled), calibration, test)


if __name__ == "__main__":
    main()
