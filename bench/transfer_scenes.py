"""Transfer on the physics scene types: transfer-eval on a labelled folder of fresh scenes (bounce / pendulum / slide / spring).

Writes ``--per-class`` scenes of each type (a seed no training draws, 16:9 at 224×126 px,
H.264 as the sample library) into ``<out>/<type>/``, then runs the transfer-eval flow in a
throw-away data folder with the reference model: a linear probe on frozen clip embeddings
and a short fine-tune of the whole network, each against the same network at random init.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/transfer_scenes.py --per-class 12
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRANSFER_SEED = 7_000_005  # no training or evaluation stream draws it


def write_scenes(out: Path, per_class: int) -> None:
    """``per_class`` fresh scenes of each type under ``out/<type>/``."""
    from speednet.synthetic.library import render_clip
    from speednet.synthetic.scenes import SCENE_TYPES, sample_scene

    for label, scene_type in enumerate(SCENE_TYPES):
        for k in range(per_class):
            path = out / scene_type / f"{scene_type}-{k:03d}.mp4"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                scene = sample_scene(np.random.default_rng([TRANSFER_SEED, label, k]), width=224, height=126,
                                     scene_type=scene_type, duration_s=(4.0, 6.0))
                render_clip(scene, path, include_tracks=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/reference.pt")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--clips-per-video", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--out", default=None, help="where the labelled folder goes (default: a temp folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="speednet-transfer-") as scratch:
        folder = Path(args.out or Path(scratch) / "scenes")
        write_scenes(folder, args.per_class)
        print(f"{args.per_class} scenes per type in {folder} ({time.perf_counter() - started:.0f} s)", flush=True)
        os.environ["SPEEDNET_HOME"] = str(Path(scratch) / "home")
        from flows.transfer import transfer_eval

        result = transfer_eval(library=str(folder), model=str(Path(args.checkpoint).resolve()),
                               clips_per_video=args.clips_per_video, finetune_steps=args.finetune_steps)
    rows = result["rows"]
    print(f"\n{len(result['classes'])} classes, {rows[0]['train_videos']} training and {rows[0]['test_videos']} test "
          f"videos ({rows[0]['test_clips']} test clips); chance {1 / len(result['classes']):.2f}")
    print("| features | linear probe: clips | videos | fine-tune: clips | videos |")
    print("|---|---|---|---|---|")
    for init, name in (("pretrained", "SpeedNet (reference model)"), ("random", "same network, random init")):
        got = {r["method"]: r for r in rows if r["init"] == init}
        print(f"| {name} | {got['linear_probe']['clip_accuracy']:.3f} | {got['linear_probe']['video_accuracy']:.3f} "
              f"| {got['fine_tune']['clip_accuracy']:.3f} | {got['fine_tune']['video_accuracy']:.3f} |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
