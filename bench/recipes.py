"""Training recipes compared by their learning curves on fresh physics scenes (issue: a SpeedNet that learns).

Each recipe trains the CPU preset from scratch on the procedural source alone (a fresh
scene for every clip) and is evaluated every ``--eval-every`` steps on the same held-out
scenes (``speednet.synthetic.stream.evaluation_clips``: seed 7,000,001, whole frames at
64 px): accuracy at exact 1x vs 2x (the scorer's question), at regular jittered rates,
under the paper's random drops (what the "drops" recipes train on), and the pair ranking
(2x version above 1x). A gap between them shows a shortcut or a miscalibrated threshold.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/recipes.py --steps 1200 [--recipes paper,mixed,...]

Runs one recipe after another (never two at once on 2 cores); each run folder keeps its
``last.pt``, so a killed bench re-run resumes where it stopped. Writes ``recipes.json``
and ``recipes.png`` (held-out accuracy against steps) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.clip_dataset import ClipSource  # noqa: E402
from tasks.trainer import TrainConfig, train  # noqa: E402

# What every recipe shares: the CPU preset, batch 32 items (16 scenes at both speeds),
# fresh scenes only, drawn square at 64 px; evaluation on whole frames.
BASE = TrainConfig(preset="cpu", batch_size=32, lr=2e-3, procedural_share=1.0, loader_workers=1, log_every=50)
# EMA weights, BatchNorm statistics recalibrated on the final weights, and the decision
# threshold fitted on fresh exact-speed scenes (tasks.trainer).
FINISH = dict(ema_decay=0.998, bn_recalibration_batches=30, calibration_scenes=100)
RECIPES = {
    # The paper's sampling as the last session ran it: random drops, no EMA, no recalibration.
    "paper": dict(temporal_sampler="drops"),
    # Jerkiness made label-free (drops or regular resampling, per version), with FINISH.
    "mixed": dict(temporal_sampler="mixed", **FINISH),
    # The same, starting from an easy 1x-vs-3.5x contrast narrowed to the paper's 2x over a third of the run.
    "mixed_curriculum": dict(temporal_sampler="mixed", **FINISH,
                             curriculum_steps=-3),
    # Regular resampling only (what the scorer does), with the curriculum.
    "regular_curriculum": dict(temporal_sampler="regular", **FINISH,
                               curriculum_steps=-3),
    # The same as mixed_curriculum with a higher peak learning rate.
    "mixed_curriculum_lr4e-3": dict(temporal_sampler="mixed", **FINISH,
                                    curriculum_steps=-3, lr=4e-3),
}


def recipe_config(name: str, steps: int, eval_every: int, eval_scenes: int, seed: int) -> TrainConfig:
    """The TrainConfig of a recipe at this budget (a negative curriculum means 1/n of the steps)."""
    fields = dict(RECIPES[name])
    if fields.get("curriculum_steps", 0) < 0:
        fields["curriculum_steps"] = steps // -fields["curriculum_steps"]
    return dataclasses.replace(BASE, steps=steps, eval_every=eval_every, eval_scenes=eval_scenes, seed=seed,
                               checkpoint_every=min(100, steps), **fields)


def plot(results: dict, path: Path) -> None:
    """Held-out exact-speed accuracy (solid) and pair ranking (dotted) against steps, one colour per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for colour, (name, result) in enumerate(results.items()):
        points = [(h["step"], h["held_out"]) for h in result["history"] if "held_out" in h]
        steps = [s for s, _ in points]
        axes[0].plot(steps, [r["exact"] for _, r in points], "-o", ms=3, color=f"C{colour}", label=name)
        axes[0].plot(steps, [r["ranking"] for _, r in points], ":", color=f"C{colour}")
        axes[1].plot(steps, [r["regular"] for _, r in points], "-o", ms=3, color=f"C{colour}", label=name)
        axes[2].plot(steps, [r["drops"] for _, r in points], "-o", ms=3, color=f"C{colour}", label=name)
    axes[0].set(title="held-out, exact 1x vs 2x (dotted: pair ranking)", xlabel="step", ylabel="accuracy", ylim=(0.4, 1.0))
    axes[1].set(title="held-out, regular jittered rates", xlabel="step")
    axes[2].set(title="held-out, random frame drops", xlabel="step")
    for ax in axes:
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="paper,mixed,mixed_curriculum")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--eval-scenes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("var/bench/recipes"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "recipes.json"
    results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.recipes.split(","):
        config = recipe_config(name, args.steps, args.eval_every, args.eval_scenes, args.seed)
        print(f"\n== {name}: {json.dumps(RECIPES[name])}", flush=True)
        started = time.perf_counter()

        def log(entry: dict) -> None:
            line = f"{name} step {entry['step']:>5}  loss {entry['loss']:.3f}  train {entry['train_accuracy']:.3f}  " \
                   f"{entry['seconds']:.0f} s"
            if "held_out" in entry:
                r = entry["held_out"]
                line += (f"  | held-out exact {r['exact']:.3f} (1x {r['natural_ok']:.2f}, 2x {r['sped_up_ok']:.2f}) "
                         f"regular {r['regular']:.3f} drops {r['drops']:.3f} ranking {r['ranking']:.3f}")
            print(line, flush=True)

        result = train(config, ClipSource({}), args.out / name, resume=True, on_log=log)
        results[name] = {"config": dataclasses.asdict(config), "history": result["history"],
                         "wall_s": time.perf_counter() - started}
        summary_path.write_text(json.dumps(results, indent=1))
        plot(results, args.out / "recipes.png")
    print(f"\n{summary_path}\n{args.out / 'recipes.png'}")


if __name__ == "__main__":
    main()
