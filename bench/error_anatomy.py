"""Which scenes a model gets wrong, and why: its exact 1x/2x answers against each scene's ground truth.

Pair ranking near 1 with accuracy near 0.88 means the network orders a scene's two versions
but places the pair on the wrong side of the cut. This bench says where: for fresh scenes of
a calibration stream (never an evaluation scene, so what it shows may steer a recipe), the
midpoint of each scene's two logits (natural, 2x; what the answers share) and the errors,
binned by what the generator knows of the 32 natural frames the 2x version spans — object
pixel speed at the model's input scale (camera included), share of frames with motion, object
size, room height, scene type, object count, camera motion. The headline is the rank
correlation of the midpoint with log pixel speed: 0 for a network that judges physics
rather than how fast the pixels move.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/error_anatomy.py [--checkpoint models/reference.pt] [--scenes 400]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.evaluation import speednet_scores  # noqa: E402
from speednet.model import load_checkpoint  # noqa: E402
from speednet.synthetic.library import object_tracks_px  # noqa: E402
from speednet.synthetic.stream import CALIBRATION_STREAM, calibration_clips, library_scene, stream_seed  # noqa: E402
from storage import paths  # noqa: E402

ANATOMY_RUN_SEED = 424_242  # a run seed no shipped model was trained or calibrated with
MOVING_PX = 0.2  # a frame step of at least this many model pixels counts as motion
SIZE_ATTRIBUTES = {"ball": "radius_m", "pendulum": "bob_radius_m", "slide": "half_height_m", "spring": "mass_half_size_m"}


def scene_facts(seed: list[int], input_size: int, clip_frames: int) -> dict:
    """Ground truth of one calibration scene over the 2T natural frames its exact 2x version spans."""
    scene, start_s = library_scene(seed, 3 * clip_frames)  # the clip calibration_clips draws
    scale = input_size / min(scene.width, scene.height)
    tracks = object_tracks_px(scene, start_s + np.arange(2 * clip_frames) / scene.fps)
    steps = np.array([np.hypot(np.diff(t["x_px"]), np.diff(t["y_px"])) for t in tracks]) * scale
    sizes = [2 * getattr(o, SIZE_ATTRIBUTES[o.kind]) * scene.pixels_per_metre * scale for o in scene.objects]
    return {"pixel_speed": float(steps.max(axis=0).mean()), "moving_share": float((steps.max(axis=0) >= MOVING_PX).mean()),
            "object_px": float(max(sizes)), "room_height_m": scene.room_height_m, "scene_type": scene.scene_type,
            "objects": len(scene.objects), "camera_moves": bool(scene.camera.pan_range_m > 0 or scene.camera.shake_px > 0)}


def bins(values: list, count: int = 4) -> list[tuple[str, np.ndarray]]:
    """(label, mask) per category, or per quantile bin of a numeric feature."""
    values = np.asarray(values)
    if values.dtype.kind in "bOU" or len(set(values.tolist())) <= 6:
        return [(str(v), values == v) for v in sorted(set(values.tolist()))]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, count + 1)))  # tied quantiles (a share at 1) merge
    last = len(edges) - 2
    return [(f"{lo:.3g}–{hi:.3g}", (values >= lo) & ((values <= hi) if i == last else (values < hi)))
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=paths.REFERENCE_CHECKPOINT)
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None, help="Write the per-scene rows and the summary as JSON here too.")
    args = parser.parse_args()
    model, config, _ = load_checkpoint(args.checkpoint)
    T = config.clip_frames
    clips = calibration_clips(args.scenes, run_seed=ANATOMY_RUN_SEED, size_px=config.input_size, clip_frames=3 * T)
    natural, fast = speednet_scores(model, clips, logits=True)
    rows = [scene_facts(list(stream_seed(ANATOMY_RUN_SEED, CALIBRATION_STREAM, k)), config.input_size, T)
            for k in range(args.scenes)]
    midpoint = (natural + fast) / 2
    summary = {"checkpoint": str(args.checkpoint), "scenes": args.scenes,
               "accuracy": float(np.mean(np.r_[natural < 0, fast >= 0])), "ranking": float(np.mean(fast > natural)),
               "midpoint_sd": float(midpoint.std()), "gap_mean": float(np.mean(fast - natural)),
               "midpoint_vs_log_pixel_speed": float(spearmanr(midpoint, np.log([r["pixel_speed"] for r in rows])).statistic)}
    print(f"{args.checkpoint}: {args.scenes} fresh scenes (calibration stream of run seed {ANATOMY_RUN_SEED})")
    print(f"accuracy {summary['accuracy']:.3f}, pair ranking {summary['ranking']:.3f}; midpoint of a pair's logits: "
          f"sd {summary['midpoint_sd']:.2f} against a mean gap of {summary['gap_mean']:.2f}; "
          f"its rank correlation with log pixel speed {summary['midpoint_vs_log_pixel_speed']:+.2f}")
    print(f"\n{'feature':<14}{'bin':>14}{'scenes':>8}{'accuracy':>10}{'1x wrong':>10}{'2x wrong':>10}{'midpoint':>10}")
    for feature in ("pixel_speed", "moving_share", "object_px", "room_height_m", "scene_type", "objects", "camera_moves"):
        for label, mask in bins([r[feature] for r in rows]):
            print(f"{feature:<14}{label:>14}{int(mask.sum()):>8}{np.mean(np.r_[natural[mask] < 0, fast[mask] >= 0]):>10.3f}"
                  f"{np.mean(natural[mask] >= 0):>10.2f}{np.mean(fast[mask] < 0):>10.2f}{midpoint[mask].mean():>+10.2f}")
            feature = ""
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "rows": [
            {**r, "natural_logit": float(n), "sped_up_logit": float(f)} for r, n, f in zip(rows, natural, fast)]}, indent=1))


if __name__ == "__main__":
    main()
