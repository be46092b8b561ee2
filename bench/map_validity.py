"""Do speediness maps point at what moves? The hottest cell against the fastest object's track, on physics scenes.

For fresh scenes (a seed no training draws) the 2x version of a 16-frame window is drawn in
16:9 at each short side asked (the map's input size), and the generator's ground truth gives
every object's centre in every frame. In windows where the fastest object moves at least
``--min-px`` px per frame (mean, at the drawn size), the map's hottest cell (the sped-up logit
averaged over the window's time) should lie on that object's track: a cell its centre
passes through ("on"), or one cell from it ("near"). The share a uniformly random cell gets
is printed beside it, and the same network at random init as a second reference.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/map_validity.py --scenes 300 --sizes 64,96,128
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.maps import cell_of, speediness_map, stretched, strip  # noqa: E402
from speednet.model import load_checkpoint, random_init_like  # noqa: E402
from speednet.synthetic.library import object_tracks_px, render_frames  # noqa: E402
from speednet.synthetic.scenes import sample_scene  # noqa: E402

MAP_SEED = 7_000_003  # no training or evaluation stream draws it (speednet.synthetic.stream)


def window(index: int, short_side: int, clip_frames: int, speed: float = 2.0):
    """(frames (T, H, W, 3), tracks [(T, 2) x/y px per object]) of one sped-up window of a fresh 16:9 scene."""
    rng = np.random.default_rng([MAP_SEED, index])
    height = short_side
    width = int(round(short_side * 16 / 9 / 2)) * 2
    scene = sample_scene(rng, width=width, height=height, duration_s=(6.0, 10.0))
    start_s = float(rng.uniform(0.0, scene.duration_s - speed * clip_frames / scene.fps))
    t = start_s + speed * np.arange(clip_frames) / scene.fps
    frames = np.concatenate(list(render_frames(scene, t)))
    tracks = [np.stack([tr["x_px"], tr["y_px"]], axis=1) for tr in object_tracks_px(scene, t)]
    return frames, tracks


def judge(model, frames: np.ndarray, tracks: list[np.ndarray], min_px: float, input_size: int) -> dict | None:
    """Whether the hottest cell is on / near the fastest object's track, and a random cell's chances; None if nothing moves."""
    speeds = [np.linalg.norm(np.diff(track, axis=0), axis=1).mean() for track in tracks]
    if not speeds or max(speeds) < min_px:
        return None
    track = tracks[int(np.argmax(speeds))]
    result = speediness_map(model, frames, input_size)
    grid = result.cells.shape[1:]
    visited = {tuple(c) for c in cell_of(track[:, 0], track[:, 1], frames.shape[1:3], grid)}
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    on = np.zeros(grid, bool)
    near = np.zeros(grid, bool)
    for r, c in visited:
        on[r, c] = True
        near |= (np.abs(rows - r) <= 1) & (np.abs(cols - c) <= 1)
    hot = result.hottest_cell()
    return {"on": bool(on[hot]), "near": bool(near[hot]), "on_random": on.mean(), "near_random": near.mean(),
            "grid": grid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/reference.pt")
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--sizes", default="64,96,128", help="short sides the scenes are drawn and mapped at")
    parser.add_argument("--min-px", type=float, default=2.0)
    parser.add_argument("--picture", default="docs/img/speediness-map.png", help="an example strip ('' for none)")
    args = parser.parse_args()
    torch.manual_seed(0)
    trained, _, _ = load_checkpoint(args.checkpoint)
    random_init = random_init_like(trained)
    T = trained.config.clip_frames
    print(f"{args.scenes} scenes of seed {MAP_SEED}, 2x windows of {T} frames, fastest object ≥ {args.min_px} px/frame")
    print("| short side | map cells | windows | trained: on track | near (±1 cell) | random init: on | near "
          "| random cell: on | near |")
    print("|---|---|---|---|---|---|---|---|---|")
    started = time.perf_counter()
    for size in [int(s) for s in args.sizes.split(",")]:
        judged = {"trained": [], "random_init": []}
        for index in range(args.scenes):
            frames, tracks = window(index, size, T)
            for name, model in (("trained", trained), ("random_init", random_init)):
                verdict = judge(model, frames, tracks, args.min_px, size)
                if verdict:
                    judged[name].append(verdict)
        a, b = judged["trained"], judged["random_init"]
        share = lambda rows, key: float(np.mean([r[key] for r in rows])) if rows else float("nan")  # noqa: E731
        grid = "×".join(map(str, a[0]["grid"])) if a else "-"
        print(f"| {size} | {grid} | {len(a)} | **{share(a, 'on'):.3f}** | {share(a, 'near'):.3f} | {share(b, 'on'):.3f} "
              f"| {share(b, 'near'):.3f} | {share(a, 'on_random'):.3f} | {share(a, 'near_random'):.3f} |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.picture:
        _save_example(trained, args.picture, T)


def _save_example(model, path: str, clip_frames: int) -> None:
    """A strip of one window with a fast object: frames above, the map over them below (PNG)."""
    from PIL import Image

    for index in range(200):
        frames, tracks = window(index, 128, clip_frames)
        if tracks and max(np.linalg.norm(np.diff(t, axis=0), axis=1).mean() for t in tracks) >= 4:
            break
    result = speediness_map(model, frames, 128)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip(frames, stretched(result.frames)[0])).save(path)
    print(f"example: {path} (scene {index} of seed {MAP_SEED}, 2x, 128 px)")


if __name__ == "__main__":
    main()
