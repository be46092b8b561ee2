"""Run train-speednet's trainer on a bare GPU machine, sized to a wall-clock budget.

A borrowed GPU machine carries torch but not Prefect, DuckDB or decord, and is lent for
minutes. On fresh procedural scenes (``procedural_share=1``: no library, no catalog) the
flow's own training loop, ``tasks.trainer.train``, needs none of those, so this script runs
it directly, as the flow's torchrun launch does. The run's length is set by measurement: a
short run of the same loop gives the steps per second, and so the steps that fit the budget.

    python3 scripts/gpu_train.py --out OUT --deadline-s 560 \
        --config '{"init_from": "models/reference.pt", "batch_size": 128, "lr": 2e-3, "seed": 10, ...}'

Order: a 3-step smoke run with its whole ending (a broken device path fails in seconds, not
at the end), then the measuring run, then the run. ``--steps`` skips the measuring run.
The run folder (``last.pt``, ``final.pt``, ``manifest.json``, ``history.json``) is ``OUT``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _missing in ("ffmpeg",):  # drawing scenes needs no codec; a bare GPU image lacks ffmpeg-python
    try:
        __import__(_missing)
    except ImportError:
        sys.modules[_missing] = types.ModuleType(_missing)

import torch  # noqa: E402

from storage.clip_dataset import ClipSource  # noqa: E402
from tasks.trainer import TrainConfig, pick_device, train, write_manifest  # noqa: E402

NO_LIBRARY = ClipSource({})
FINISH_RESERVE_S = 45.0  # after the last step: calibration scenes, BatchNorm, threshold, last evaluation, saving


class _ProbeDone(Exception):
    """Raised from the progress callback to end a measuring run."""


def steps_per_s(config: TrainConfig, seconds: float) -> float:
    """Steady training steps per second of ``config`` here: the real loop, timed past its first ``seconds / 3``.

    Timing the loop itself, not the loader and the model step apart, counts what they share:
    the main process receives each batch, copies it to the device and waits for the step.
    """
    probe = dataclasses.replace(config, steps=10**6, eval_every=0, eval_scenes=0, calibration_scenes=0,
                                bn_recalibration_batches=0, checkpoint_every=10**6)
    marks: list[tuple[int, float]] = []  # (step, seconds) of every logged entry

    def on_log(entry: dict) -> None:
        marks.append((entry["step"], entry["seconds"]))
        if entry["seconds"] >= seconds:
            raise _ProbeDone

    with tempfile.TemporaryDirectory() as probe_dir:
        try:
            train(probe, NO_LIBRARY, probe_dir, on_log=on_log)
        except _ProbeDone:
            pass
    steady = [mark for mark in marks if mark[1] >= seconds / 3]
    (first_step, first_s), (last_step, last_s) = (steady[0], steady[-1]) if len(steady) >= 2 else ((0, 0.0), marks[-1])
    return (last_step - first_step) / max(last_s - first_s, 1e-9)


def print_entry(entry: dict) -> None:
    """One progress line per logged entry that is a hundredth step or carries a held-out evaluation."""
    if entry["step"] % 100 and "held_out" not in entry:
        return
    line = f"step {entry['step']:>6}  loss {entry['loss']:.4f}  train acc {entry['train_accuracy']:.3f}  {entry['seconds']:.0f} s"
    if "held_out" in entry:
        report = entry["held_out"]
        line += f"  | fresh scenes: exact {report['exact']:.3f}, ranking {report['ranking']:.3f}"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, manifest, history)")
    parser.add_argument("--config", default="{}", help="TrainConfig fields as JSON (procedural_share is forced to 1)")
    parser.add_argument("--deadline-s", type=float, default=560.0, help="wall seconds for everything, from start")
    parser.add_argument("--steps", type=int, default=None, help="run exactly this many steps (no measurements)")
    parser.add_argument("--probe-s", type=float, default=20.0, help="seconds the measuring run takes")
    parser.add_argument("--swa-last", type=float, default=None,
                        help="deliver the mean of the weights over this last share of the steps (sets swa_from)")
    args = parser.parse_args()
    began = time.perf_counter()
    config = TrainConfig(**{**json.loads(args.config), "procedural_share": 1.0})
    print(f"device {pick_device()}, {torch.get_num_threads()} threads; config {config}", flush=True)

    with tempfile.TemporaryDirectory() as smoke_dir:  # the whole path, device included, in seconds
        smoke = dataclasses.replace(config, steps=3, warmup_steps=1, eval_every=0, eval_scenes=4, checkpoint_every=3,
                                    calibration_scenes=min(config.calibration_scenes, 4),
                                    swa_from=None if config.swa_from is None and args.swa_last is None else 0)
        train(smoke, NO_LIBRARY, smoke_dir)
    print(f"smoke run passed at {time.perf_counter() - began:.0f} s", flush=True)

    steps = args.steps
    if steps is None:
        rate = steps_per_s(config, args.probe_s)
        budget = args.deadline_s - (time.perf_counter() - began) - FINISH_RESERVE_S
        steps = max(0, int(0.92 * rate * budget) // 10 * 10)
        print(f"{rate:.2f} steps/s measured; {budget:.0f} s left for training: {steps} steps", flush=True)
        if steps < 10:
            sys.exit(f"gpu_train: only {steps} steps fit before --deadline-s {args.deadline_s:g}; give a later deadline")
    swa_from = config.swa_from if args.swa_last is None else int(steps * (1 - args.swa_last))
    config = dataclasses.replace(config, steps=steps, swa_from=swa_from)
    args.out.mkdir(parents=True, exist_ok=True)
    write_manifest(args.out / "manifest.json", config, NO_LIBRARY, args.out, resume=False)
    result = train(config, NO_LIBRARY, args.out, on_log=print_entry)
    (args.out / "history.json").write_text(json.dumps(result["history"]))
    print(f"done: {steps} steps, {result['checkpoint']}, {time.perf_counter() - began:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
