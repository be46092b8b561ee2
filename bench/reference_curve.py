"""The reference model's learning curve across its training stages, as one PNG and one table.

A model fine-tuned from another (``init_from``) starts its own step count at 0; this reads
the held-out evaluations each stage's run recorded in its ``last.pt`` and lays them end to
end, so the curve shows accuracy against all the steps the weights have seen.

    .venv/bin/python bench/reference_curve.py RUN_FOLDER [RUN_FOLDER ...] --out models/reference-curve.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.atomic import atomic_write  # noqa: E402

SERIES = (("exact", "-o", "C1", "exact 1x vs 2x"), ("regular", "--", "C4", "jittered rates"),
          ("drops", "-.", "C2", "random drops"), ("ranking", ":", "C5", "pair ranking"))


def stage_history(run_folder: Path) -> list[dict]:
    """The per-step records of a train-speednet run: those of its final.pt (with the ending's evaluation), else last.pt's."""
    final = run_folder / "final.pt"
    checkpoint = torch.load(final if final.exists() else run_folder / "last.pt", map_location="cpu", weights_only=False)
    return checkpoint["extra"]["history"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="Run folders, first stage first.")
    parser.add_argument("--out", type=Path, default=Path("var/bench/reference-curve.png"))
    parser.add_argument("--first-step", type=int, default=0,
                        help="Steps the first run's starting model had already trained (its stage's place in the whole).")
    parser.add_argument("--title", default="reference model: natural vs 2x on fresh physics scenes")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, offsets, offset, minutes = [], [], args.first_step, 0.0
    for run in args.runs:
        history = stage_history(run)
        for record in history:
            if "held_out" in record:
                points.append((offset + record["step"], minutes + record["seconds"] / 60, record["held_out"]))
        offsets.append(offset)
        offset += history[-1]["step"]
        minutes += history[-1]["seconds"] / 60
    print("| step | training time | exact 1x vs 2x | 1x right / 2x right | jittered rates | random drops | pair ranking |")
    print("|---|---|---|---|---|---|---|")
    for step, at_minutes, report in points:
        print(f"| {step:,} | {at_minutes:.0f} min | {report['exact']:.3f} | {report['natural_ok']:.2f} / "
              f"{report['sped_up_ok']:.2f} | {report['regular']:.3f} | {report['drops']:.3f} | {report['ranking']:.2f} |")

    fig, axis = plt.subplots(figsize=(8, 4))
    steps = [step for step, _, _ in points]
    for key, style, color, label in SERIES:
        axis.plot(steps, [report[key] for _, _, report in points], style, ms=3, color=color, label=label)
    for start in offsets[1:]:
        axis.axvline(start, color="grey", lw=0.8)
        axis.annotate("fine-tuned from here", (start, 0.42), fontsize=7, color="grey", xytext=(4, 0),
                      textcoords="offset points")
    axis.axhline(0.9, color="black", lw=0.6, ls=":")
    axis.set(xlabel="training steps (all stages)", ylabel="accuracy on 100 fresh scenes", ylim=(0.4, 1.02),
             title=args.title)
    axis.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"curve: {args.out}")


if __name__ == "__main__":
    main()
