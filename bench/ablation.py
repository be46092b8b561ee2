"""The paper's augmentation ablation on the sample library: four set-ups, in-domain vs cross-domain.

Trains the CPU preset once per row of the paper's table (same-batch / temporal / spatial
augmentation switched off one after another) on the same split of the ingested library,
then reports held-out natural-vs-2x accuracy on synthetic scenes (in-domain) and on the
real clips (cross-domain, never trained on), beside the mean-flow baseline.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/ablation.py [--steps 150] [--out var/bench/ablation]

Needs an ingested library (`speednet samples` + `speednet ingest`, or the main command).
Every row uses the same seed, split, step count, batch size and learning rate, so a row
differs from the one above it in one switch only. Writes ``ablation.json`` and a bar chart
``ablation.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
_TMP = Path(tempfile.mkdtemp(prefix="speednet-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_TMP / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

from storage import paths  # noqa: E402
from tasks.train import evaluate_model, split_by_video, train_model  # noqa: E402
from tasks.trainer import TrainConfig  # noqa: E402

# (label, same_batch, temporal_aug, spatial_aug): the rows of the paper's table, top to bottom.
ROWS = (
    ("all three (the method)", True, True, True),
    ("no same-batch", False, True, True),
    ("no same-batch, no temporal", False, False, True),
    ("none", False, False, False),
)
# The paper's numbers for the same rows (Kinetics in-domain, NFS cross-domain), for the side-by-side.
PAPER = {ROWS[0][0]: (75.6, 73.6), ROWS[1][0]: (88.2, 59.3), ROWS[2][0]: (90.0, 57.7), ROWS[3][0]: (96.9, 57.4)}


def run_row(label: str, same_batch: bool, temporal_aug: bool, spatial_aug: bool, args, split, out: Path) -> dict:
    """Train one set-up from scratch and evaluate it on the held-out videos."""
    config = TrainConfig(preset="cpu", steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         same_batch=same_batch, temporal_aug=temporal_aug, spatial_aug=spatial_aug,
                         loader_workers=args.loader_workers, checkpoint_every=args.steps, log_every=max(1, args.steps // 5))
    run_dir = out / f"row-{int(same_batch)}{int(temporal_aug)}{int(spatial_aug)}"
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"\n== {label}: same-batch {same_batch}, temporal {temporal_aug}, spatial {spatial_aug}", flush=True)
    start = time.perf_counter()
    result = train_model.fn(config, split, str(run_dir), resume=False)
    train_s = time.perf_counter() - start
    metrics = evaluate_model.fn(result["checkpoint"], split)
    last = result["history"][-1] if result["history"] else {}
    return {"row": label, "same_batch": same_batch, "temporal_aug": temporal_aug, "spatial_aug": spatial_aug,
            "steps": args.steps, "train_s": round(train_s, 1), "train_accuracy": last.get("train_accuracy"),
            "synthetic": metrics["synthetic"]["speednet_accuracy"], "real": metrics["real"]["speednet_accuracy"],
            "flow_synthetic": metrics["synthetic"]["flow_baseline_accuracy"], "flow_real": metrics["real"]["flow_baseline_accuracy"],
            "clips_synthetic": metrics["synthetic"]["clips"], "clips_real": metrics["real"]["clips"]}


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: held-out synthetic and real accuracy per row, the flow baseline as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(x - 0.2, [r["synthetic"] for r in rows], 0.4, label="held-out synthetic (in-domain)")
    ax.bar(x + 0.2, [r["real"] for r in rows], 0.4, label="real clips (cross-domain)")
    ax.axhline(rows[0]["flow_synthetic"], color="C3", linestyle="-.", label="mean-flow baseline, synthetic")
    ax.axhline(rows[0]["flow_real"], color="C4", linestyle=":", label="mean-flow baseline, real")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xticks(x, [r["row"] for r in rows], fontsize=8)
    ax.set(ylabel="natural vs 2x accuracy", ylim=(0.3, 1.0), title=f"Augmentation ablation, CPU preset, {rows[0]['steps']} steps")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-home", type=Path, default=None, help="state folder with an ingested library (default: $SPEEDNET_HOME)")
    parser.add_argument("--steps", type=int, default=150, help="training steps per row")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--rows", default="0,1,2,3", help="which rows of the table to run (0 = the method)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: <home>/bench/ablation)")
    args = parser.parse_args()
    home = args.data_home or paths.data_home()
    out = args.out or home / "bench" / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    split = split_by_video.fn(str(paths.catalog_path(home)), 0.15, args.seed)
    print(f"library {home}: {len(split.train)} training videos, {len(split.held_out)} held out "
          f"({sum(e.domain == 'real' for e in split.held_out)} real)")
    rows = [run_row(*ROWS[int(i)], args, split, out) for i in args.rows.split(",")]

    print(f"\n{'set-up':<28} {'train':>6} {'synthetic':>9} {'real':>6}   paper: Kinetics  NFS   ({args.steps} steps each)")
    for r in rows:
        kinetics, nfs = PAPER[r["row"]]
        print(f"{r['row']:<28} {r['train_accuracy']:>6.3f} {r['synthetic']:>9.3f} {r['real']:>6.3f}   "
              f"{kinetics:>13.1f}% {nfs:>5.1f}%   ({r['train_s']:.0f} s)")
    print(f"{'mean-flow baseline':<28} {'':>6} {rows[0]['flow_synthetic']:>9.3f} {rows[0]['flow_real']:>6.3f}   "
          f"{55.8:>13.1f}% {55.0:>5.1f}%")
    print(f"held-out clips: {rows[0]['clips_synthetic']} synthetic, {rows[0]['clips_real']} real")
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "ablation.png")
    print(f"results: {out / 'ablation.json'}, chart: {out / 'ablation.png'}")
    shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
