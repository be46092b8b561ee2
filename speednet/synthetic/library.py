"""Render scenes to H.264 clips with JSON sidecars, one clip or a whole library in parallel.

Layout of a library folder::

    scene-0000.mp4   scene-0000.json        natural speed throughout
    variant-half2x-0200.mp4  (+ .json)      natural first half, 2x second half
    variant-slowmo-0201.mp4  (+ .json)      slowed 2x (physics at 0.5x)
    scenes.jsonl                            one summary line per clip, by index

Clip k is drawn from the seed sequence (seed, k) alone, so the library is the same
whatever the number of workers and whichever clips a re-run skips.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from speednet.ffmpeg import VideoWriter
from speednet.synthetic import draw
from speednet.synthetic.scenes import (DEFAULT_SIZES, Ball, Pendulum, SceneParams, SlidingBox, Spring,
                                       object_positions_m, sample_scene)
from storage.atomic import atomic_write  # stdlib-only: the one way this project writes files atomically

CRF = 20
PRESET = "veryfast"
_BATCH_FRAMES = 16


# ----------------------------------------------------------------------------- geometry per frame

def camera_offsets(scene: SceneParams, t_seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera pan (m along the room) and shake (px, x and y) at the given physics times."""
    cam = scene.camera
    pan_m = cam.pan_range_m * (0.5 - 0.5 * np.cos(2 * np.pi * t_seconds / cam.pan_period_s + cam.pan_phase_rad))
    weights = (0.5, 0.3, 0.2)
    shake_x = sum(w * np.sin(2 * np.pi * f * t_seconds + p) for w, f, p in zip(weights, cam.shake_hz, cam.shake_phase_rad))
    shake_y = sum(w * np.sin(2 * np.pi * f * 1.17 * t_seconds + p + 1.3) for w, f, p in zip(weights, cam.shake_hz, cam.shake_phase_rad))
    return pan_m, cam.shake_px * shake_x, cam.shake_px * shake_y


def object_tracks_px(scene: SceneParams, t_seconds: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """Per object, its centre in frame pixels (x_px, y_px) and spin angle at each physics time
    (default: every frame of the clip), as drawn."""
    t = scene.frame_times_s() if t_seconds is None else np.asarray(t_seconds, dtype=np.float64)
    pan_m, shake_x, shake_y = camera_offsets(scene, t)
    ppm = scene.pixels_per_metre
    tracks = []
    for obj in scene.objects:
        pos = object_positions_m(obj, scene, t)
        tracks.append({"x_px": (pos["x_m"] - pan_m) * ppm + shake_x,
                       "y_px": scene.floor_row_px - pos["y_m"] * ppm + shake_y,
                       "angle_rad": pos["angle_rad"]})
    return tracks


# ----------------------------------------------------------------------------- drawing

def _background_canvas(scene: SceneParams, pad: int) -> np.ndarray:
    """The static world behind the objects, wide enough for the whole pan, with floor and ceiling mounts."""
    bg, ppm = scene.background, scene.pixels_per_metre
    rng = np.random.default_rng(bg.seed)
    h = scene.height + 2 * pad + 1
    # Wide enough for the whole pan even if a hand-made scene's room is narrower than the view.
    w = int(np.ceil(max(scene.room_width_m, scene.width / ppm + scene.camera.pan_range_m) * ppm)) + 2 * pad + 2
    if bg.kind == "gradient":
        canvas = draw.gradient_background(rng, h, w, bg.colour_a, bg.colour_b)
    elif bg.kind == "noise":
        canvas = draw.noise_background(rng, h, w, bg.colour_a, bg.colour_b, bg.scale_px)
    elif bg.kind == "photo":
        canvas = draw.photo_background(rng, h, w, bg.scale_px)
    else:
        canvas = np.empty((h, w, 3), np.float32)
        canvas[:] = np.asarray(bg.colour_a, np.float32)
    floor_row = int(round(scene.floor_row_px)) + pad
    floor = np.asarray(bg.floor_colour, np.float32)
    if bg.kind == "flat":
        canvas[floor_row:] = floor
    else:
        grain = draw.smooth_noise(rng, h - floor_row, w, max(bg.scale_px / 3, 2.0))[..., None]
        canvas[floor_row:] = 0.3 * canvas[floor_row:] + 0.7 * floor + 12.0 * grain
        canvas[floor_row:floor_row + max(1, scene.height // 90)] *= 0.6  # skirting line: the floor reads as a floor
    for obj in scene.objects:
        if isinstance(obj, (Pendulum, Spring)):
            x_m, y_m = (obj.pivot_x_m, obj.pivot_y_m) if isinstance(obj, Pendulum) else (obj.anchor_x_m, obj.anchor_y_m)
            cx, cy = x_m * ppm + pad, scene.floor_row_px - y_m * ppm + pad
            mount = draw.rectangle(h, w, cx, cy - 0.02 * ppm, 0.08 * ppm + 1, 0.02 * ppm + 1)
            draw.paint(canvas, mount, (60.0, 60.0, 60.0))
    return draw.blur(canvas, bg.blur_px)


def _draw_object(frame: np.ndarray, obj, x: float, y: float, angle: float, scene: SceneParams, anchor_px, softness: float) -> None:
    h, w = frame.shape[:2]
    ppm = scene.pixels_per_metre
    look = obj.look
    if isinstance(obj, Ball) or isinstance(obj, Pendulum):
        radius = (obj.radius_m if isinstance(obj, Ball) else obj.bob_radius_m) * ppm
        if isinstance(obj, Pendulum):
            rod = draw.polyline(h, w, np.array([anchor_px, (x, y)]), max(obj.rod_half_width_m * ppm, 0.6), softness)
            draw.paint(frame, rod, (50.0, 50.0, 55.0))
        shape = draw.disc(h, w, x, y, radius, softness)
        colours = draw.texture(shape, cx=x, cy=y, angle_rad=angle, scale_px=look.pattern_scale * 2 * radius,
                               pattern=look.pattern, colour_a=look.colour_a, colour_b=look.colour_b,
                               shading=look.shading, radius_px=radius)
        draw.paint(frame, shape, colours)
        return
    if isinstance(obj, SlidingBox):
        hw, hh = obj.half_width_m * ppm, obj.half_height_m * ppm
    else:  # Spring: straight leads at both ends, a zigzag coil between them, then the hanging box
        hw = hh = obj.mass_half_size_m * ppm
        top, (_, ay) = y - hh, anchor_px
        lead = 0.1 * (top - ay)
        # Thinner wire when the coil is squeezed, so its turns stay apart instead of merging into a block.
        line = max(min(0.02 * ppm, 0.2 * (top - ay) / obj.coils), 0.6)
        for y0, y1 in ((ay, ay + lead), (top - lead, top)):
            draw.paint(frame, draw.polyline(h, w, np.array([(x, y0), (x, y1)]), line, softness), (70.0, 70.0, 80.0))
        draw.paint(frame, draw.coil(h, w, x, ay + lead, top - lead, 0.6 * hw, obj.coils, line, softness), (70.0, 70.0, 80.0))
    shape = draw.rectangle(h, w, x, y, hw, hh, softness, corner_px=0.15 * min(hw, hh))
    colours = draw.texture(shape, cx=x, cy=y, angle_rad=0.0, scale_px=look.pattern_scale * 2 * hh,
                           pattern=look.pattern, colour_a=look.colour_a, colour_b=look.colour_b)
    draw.paint(frame, shape, colours)


def render_frames(scene: SceneParams, t_seconds: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The clip's frames, as (n, H, W, 3) uint8 RGB batches in order.

    Everything that moves (objects, camera pan and shake, lighting drift) is a function
    of physics time, so a 2x segment is exactly a 2x time-lapse of the same world;
    sensor noise and flicker are per frame, as a camera's are. ``t_seconds`` renders the
    frames showing those physics times instead of the clip's own (the procedural
    training stream draws only the frames a sampled clip needs).
    """
    t = scene.frame_times_s() if t_seconds is None else np.asarray(t_seconds, dtype=np.float64)
    n_frames = len(t)
    pan_m, shake_x, shake_y = camera_offsets(scene, t)
    tracks = object_tracks_px(scene, t)
    ppm = scene.pixels_per_metre
    pad = int(np.ceil(scene.camera.shake_px)) + 2
    view = draw.CameraView(_background_canvas(scene, pad), scene.height, scene.width)
    rng = np.random.default_rng(scene.background.seed + 1)
    light = scene.lighting
    noise = draw.noise_bank(rng, 8, scene.height, scene.width, light.sensor_noise_sigma) if light.sensor_noise_sigma else None
    noise_pick = rng.integers(0, 8, n_frames)
    gain = (1.0 + light.drift_amplitude * np.sin(2 * np.pi * light.drift_hz * t + light.drift_phase_rad)
            + light.flicker_amplitude * rng.standard_normal(n_frames))
    softness = 1.0 + scene.background.blur_px
    batch = []
    for i in range(n_frames):
        frame = view.at(pan_m[i] * ppm - shake_x[i] + pad, pad - shake_y[i])
        for obj, track in zip(scene.objects, tracks):
            anchor = None
            if isinstance(obj, (Pendulum, Spring)):
                ax_m, ay_m = (obj.pivot_x_m, obj.pivot_y_m) if isinstance(obj, Pendulum) else (obj.anchor_x_m, obj.anchor_y_m)
                anchor = ((ax_m - pan_m[i]) * ppm + shake_x[i], scene.floor_row_px - ay_m * ppm + shake_y[i])
            _draw_object(frame, obj, track["x_px"][i], track["y_px"][i], track["angle_rad"][i], scene, anchor, softness)
        batch.append(draw.finish(frame, gain[i], noise[noise_pick[i]] if noise is not None else None))
        if len(batch) == _BATCH_FRAMES or i == n_frames - 1:
            yield np.stack(batch)
            batch = []


# ----------------------------------------------------------------------------- files

def sidecar(scene: SceneParams, video_name: str, *, include_tracks: bool = True) -> dict:
    """The JSON sidecar of a clip: every scene parameter, the physics time of each frame, and (optionally) where each object was drawn."""
    record = {"video": video_name, **scene.to_dict(),
              "frame_times_s": np.round(scene.frame_times_s(), 6).tolist()}
    if include_tracks:
        record["tracks_px"] = [{"kind": obj.kind, "x_px": np.round(tr["x_px"], 2).tolist(), "y_px": np.round(tr["y_px"], 2).tolist()}
                               for obj, tr in zip(scene.objects, object_tracks_px(scene))]
    return record


def index_record(scene: SceneParams, video_name: str) -> dict:
    """One line of scenes.jsonl: what a retrieval or speed probe needs without opening the sidecar."""
    return {"video": video_name, "sidecar": Path(video_name).with_suffix(".json").name, "index": scene.index,
            "seed": scene.seed, "scene_type": scene.scene_type, "variant": scene.variant, "fps": scene.fps,
            "width": scene.width, "height": scene.height, "n_frames": scene.n_frames, "duration_s": scene.duration_s,
            "pixels_per_metre": scene.pixels_per_metre, "room_height_m": scene.room_height_m,
            "object_kinds": [o.kind for o in scene.objects],
            "segments": [{"start_frame": s.start_frame, "speed": s.speed} for s in scene.segments]}


def render_clip(params: SceneParams, out_path: str | Path, *, crf: int = CRF, preset: str = PRESET,
                include_tracks: bool = True) -> dict:
    """Write one scene to `out_path` (H.264 .mp4) and its sidecar beside it (.json); return the index record.

    x264 runs single-threaded, so the same params give byte-identical files on any machine
    with the same ffmpeg build (the library gets its parallelism from processes instead).
    """
    out_path = Path(out_path)
    with VideoWriter(out_path, fps=params.fps, width=params.width, height=params.height, crf=crf, preset=preset,
                     gop_frames=int(round(params.fps)), extra_output_args={"threads": 1}) as writer:
        for batch in render_frames(params):
            writer.write(batch)
    with atomic_write(out_path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(sidecar(params, out_path.name, include_tracks=include_tracks)))
    return index_record(params, out_path.name)


def clip_name(index: int, variant: str) -> str:
    """File name of clip `index`: scene-0007.mp4 for natural clips, variant-<name>-0207.mp4 otherwise."""
    return f"scene-{index:04d}.mp4" if variant == "natural" else f"variant-{variant}-{index:04d}.mp4"


def library_scenes(*, count: int, seed: int, duration_s: tuple[float, float], sizes: Sequence[tuple[int, int]],
                   fps_choices: Sequence[float], variants: bool) -> list[tuple[str, SceneParams]]:
    """(file name, params) of every clip in a library; a few half-2x and slow-motion variants follow the natural clips."""
    jobs = [(i, "natural") for i in range(count)]
    if variants:
        n_each = max(1, count // 20)
        jobs += [(count + k, ("half2x", "slowmo")[k % 2]) for k in range(2 * n_each)]
    scenes = []
    for index, variant in jobs:
        params = sample_scene(np.random.default_rng([seed, index]), duration_s=duration_s, sizes=sizes,
                              fps_choices=fps_choices, variant=variant)
        params.seed, params.index = seed, index
        scenes.append((clip_name(index, variant), params))
    return scenes


def _is_done(path: Path, params: SceneParams) -> bool:
    """A clip is already written when its video exists and its sidecar holds the same parameters."""
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        return False
    try:
        old = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    new = json.loads(json.dumps(params.to_dict()))
    return all(old.get(k) == v for k, v in new.items())


def write_synthetic_library(
    out_dir: str | Path,
    *,
    count: int = 200,
    seed: int = 0,
    duration_s: tuple[float, float] = (5.0, 10.0),
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    fps_choices: Sequence[float] = (24, 25, 30),
    workers: int | None = None,
    variants: bool = True,
    progress: Callable[[], None] | None = None,
) -> list[Path]:
    """Write `count` natural clips (plus, with `variants`, count//20 half-2x and as many slow-motion clips) to `out_dir`.

    Clips run in a process pool (default: one worker per core); clips whose sidecar already
    matches are skipped, so an interrupted run can simply be re-run. Writes scenes.jsonl
    last. Returns the video paths in index order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = library_scenes(count=count, seed=seed, duration_s=tuple(duration_s), sizes=sizes,
                            fps_choices=fps_choices, variants=variants)
    records: dict[str, dict] = {}
    todo = []
    for name, params in scenes:
        if _is_done(out_dir / name, params):
            records[name] = index_record(params, name)
            if progress:
                progress()
        else:
            todo.append((name, params))
    # Biggest clips first, so no worker is left with a long clip at the end.
    todo.sort(key=lambda job: -job[1].n_frames * job[1].width * job[1].height)
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(todo) <= 1:
        for name, params in todo:
            records[name] = render_clip(params, out_dir / name)
            if progress:
                progress()
    else:
        # spawn, not fork: the caller may hold torch/OpenMP threads that a fork would copy mid-flight.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(render_clip, params, out_dir / name): name for name, params in todo}
            for future in as_completed(futures):
                records[futures[future]] = future.result()
                if progress:
                    progress()
    lines = [json.dumps(records[name]) for name, _ in scenes]
    with atomic_write(out_dir / "scenes.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return [out_dir / name for name, _ in scenes]
