"""A model against the mean-flow baseline on fresh scenes written to files, and on the sample library's real clips.

The targets of the reference model: natural-vs-2x on ≥ 400 physics scenes from a seed no
training ever drew (``EVALUATION_SEED``), written as H.264 files like the sample library
and decoded as scoring decodes them (isolated decode worker, decoder-side resize to the
model's input size), against the mean-flow baseline on the same clips; and the real clips
of the sample library (never trained on by the reference model), accuracy and AUC side by
side. Each file gives one 3T-frame clip from a seeded random start; the baseline's
threshold is fitted on another set of fresh scene files (seed + 1).

    OMP_WAIT_POLICY=passive .venv/bin/python bench/reference_eval.py [--checkpoint models/reference.pt] [--scenes 400]

The scene files are written once to ``--library`` (default var/bench/eval-library) and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.evaluation import compare_with_flow_baseline, sampler_report  # noqa: E402
from speednet.model import load_checkpoint  # noqa: E402
from speednet.samples import write_real_clips  # noqa: E402
from speednet.synthetic import write_synthetic_library  # noqa: E402
from speednet.synthetic.stream import EVALUATION_SEED, check_evaluation_seed  # noqa: E402
from storage import paths  # noqa: E402
from tasks.score import open_video  # noqa: E402


def decoded_clips(files: list[Path], size_px: int, clip_frames: int, *, seed: int, per_file: int = 1) -> list[np.ndarray]:
    """``per_file`` clips of ``clip_frames`` frames from each file (seeded random starts; 0: every whole window)."""
    rng = np.random.default_rng(seed)
    clips = []
    for path in files:
        n_frames, _, read = open_video(str(path), size_px)
        if n_frames < clip_frames:
            continue
        starts = range(0, n_frames - clip_frames + 1, clip_frames) if per_file == 0 else \
            rng.integers(0, n_frames - clip_frames + 1, size=per_file)
        for start in starts:
            clips.append(read(int(start), int(start) + clip_frames))
    return clips


def scene_files(folder: Path, count: int, seed: int) -> list[Path]:
    """The natural-speed scene files of a library of ``count`` scenes from ``seed`` (written if missing)."""
    check_evaluation_seed(seed)
    print(f"scene library {folder} ({count} scenes, seed {seed}) ...", flush=True)
    return write_synthetic_library(folder, count=count, seed=seed, variants=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=paths.REFERENCE_CHECKPOINT)
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--fit-scenes", type=int, default=120)
    parser.add_argument("--library", type=Path, default=Path("var/bench/eval-library"))
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here too.")
    args = parser.parse_args()
    model, config, _ = load_checkpoint(args.checkpoint)
    T = config.clip_frames
    started = time.perf_counter()
    test_files = scene_files(args.library / f"seed-{EVALUATION_SEED}", args.scenes, EVALUATION_SEED)
    fit_files = scene_files(args.library / f"seed-{EVALUATION_SEED + 1}", args.fit_scenes, EVALUATION_SEED + 1)
    test = decoded_clips(test_files, config.input_size, 3 * T, seed=0)
    fit = decoded_clips(fit_files, config.input_size, 3 * T, seed=1)
    real_files = write_real_clips(args.library / "real")
    real = decoded_clips(real_files, config.input_size, 3 * T, seed=2, per_file=0)
    print(f"decoded {len(test)} test clips, {len(fit)} fit clips, {len(real)} real windows "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    results = {"checkpoint": str(args.checkpoint), "scenes": compare_with_flow_baseline(model, fit, test),
               "scenes_samplers": sampler_report(model, test),
               "real": compare_with_flow_baseline(model, fit, real) if real else {},
               "clips": {"scenes": len(test), "fit": len(fit), "real": len(real)}}
    s, r = results["scenes"], results["real"]
    print(f"\nnatural vs 2x, exact speeds, model {args.checkpoint}")
    print(f"{'':34}{'SpeedNet acc':>13}{'AUC':>7}{'mean-flow acc':>15}{'AUC':>7}")
    print(f"{f'fresh scenes, files ({len(test)})':34}{s['speednet_accuracy']:>13.3f}{s['speednet_auc']:>7.3f}"
          f"{s['flow_baseline_accuracy']:>15.3f}{s['flow_baseline_auc']:>7.3f}")
    if r:
        print(f"{f'real clips ({len(real)} windows)':34}{r['speednet_accuracy']:>13.3f}{r['speednet_auc']:>7.3f}"
              f"{r['flow_baseline_accuracy']:>15.3f}{r['flow_baseline_auc']:>7.3f}")
    samplers = results["scenes_samplers"]
    print(f"fresh scenes by sampler: exact {samplers['exact']:.3f} (1x right {samplers['natural_ok']:.3f}, "
          f"2x right {samplers['sped_up_ok']:.3f}), regular {samplers['regular']:.3f}, drops {samplers['drops']:.3f}, "
          f"pair ranking {samplers['ranking']:.3f}")
    print(f"SpeedNet / mean-flow accuracy on the scenes: {s['speednet_accuracy'] / s['flow_baseline_accuracy']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
