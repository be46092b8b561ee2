"""Spatial speediness maps of video windows: decode the window, map it (speednet.maps), write a PNG strip and an MP4.

Used by `speednet explain` (one window a person asks about) and by score-library's ``maps``
option (the windows of each video that look most sped up). Files go under
``<data root>/plots/maps``; their rows go to the `speediness_maps` table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speednet.ffmpeg import VideoWriter
from speednet.maps import speediness_map, strip
from speednet.scoring import version_indices
from storage import objects

# Short side fed to the model for a map: the CPU model's 64 px gives 2 × 4 cells on 16:9, too
# coarse to point at an object; 128 px gives 4 × 7 and pointed best (bench/map_validity.py).
DEFAULT_MAP_INPUT = 128
DISPLAY_PX = 256  # short side of the frames shown under the heat


def map_window(model, view, path: str, at_s: float, speed: float, input_size: int):
    """(frames (T, H, W, 3) at display size, SpeedinessMap) of the window from ``at_s`` at ``speed``."""
    fps = view.timebase.model_fps
    # the window's frames as the scorer resamples a speed version: start + floor(j · speed)
    indices = int(round(at_s * fps)) + version_indices(0, model.config.clip_frames, speed)
    if at_s < 0 or indices[-1] >= view.frames:
        raise ValueError(f"{path}: a {model.config.clip_frames}-frame window from {at_s:g} s at {speed:g}x needs "
                             f"{(indices[-1] + 1) / fps:.2f} s of video at {fps:g} fps; the file has "
                             f"{view.frames / fps:.2f} s (pick an earlier --at)")
    frames = view.read(int(indices[0]), int(indices[-1]) + 1)[indices - indices[0]]
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sizes
    return frames, speediness_map(model, frames, input_size)


def write_map_files(frames: np.ndarray, result, out_base: str, fps: float) -> tuple[str, str]:
    """``out_base``.png (frames above, heat below, with a caption) and ``out_base``.mp4 (heat over the window, at
    half speed). The heat spans the window's own range of P(sped up), which the caption gives."""
    from PIL import Image, ImageDraw

    from speednet.maps import overlay, stretched

    heat, low, high = stretched(result.frames)
    png, mp4 = f"{out_base}.png", f"{out_base}.mp4"
    image = Image.fromarray(strip(frames, heat))
    caption = f"P(sped up) {result.p_sped_up:.2f}; heat from {low:.2f} (dark) to {high:.2f} (bright) per cell"
    canvas = Image.new("RGB", (image.width, image.height + 18), "white")
    canvas.paste(image, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), caption, fill="black")
    with objects.staging_file(png) as tmp:
        canvas.save(tmp, format="PNG")
    with objects.staging_file(mp4) as tmp:
        height, width = frames.shape[1:3]
        with VideoWriter(tmp, fps=fps / 2, width=width, height=height) as writer:
            writer.write(overlay(frames, heat))
    return png, mp4


def explain(path: str, video_id: str, model_id: str, model, view, at_s: float, speed: float, input_size: int,
            out_dir: str) -> dict:
    """Map one window and write its files; its `speediness_maps` row."""
    frames, result = map_window(model, view, path, at_s, speed, input_size)
    base = objects.join(out_dir, f"{Path(path).stem}-{video_id[:8]}-{model_id[:8]}-{at_s:.2f}s-{speed:g}x-{input_size}px")
    png, mp4 = write_map_files(frames, result, base, view.timebase.model_fps)
    grid_rows, grid_cols = result.cells.shape[1:]
    hot_row, hot_col = result.hottest_cell()
    return {"video_id": video_id, "model_id": model_id, "at_s": float(at_s), "speed": float(speed),
            "input_size": int(input_size), "p_sped_up": result.p_sped_up, "grid_rows": int(grid_rows),
            "grid_cols": int(grid_cols), "hottest_row": hot_row, "hottest_col": hot_col, "png_path": png,
            "mp4_path": mp4}


def most_sped_up_starts(p_natural_1x: np.ndarray, fps: float, window_s: float, count: int) -> list[float]:
    """Start times (s) of up to ``count`` non-overlapping windows where P(natural) at 1x is lowest."""
    length = max(1, int(round(window_s * fps)))
    if len(p_natural_1x) < length:
        return []
    mean = np.convolve(p_natural_1x, np.ones(length) / length, mode="valid")  # per window start
    starts: list[int] = []
    for start in np.argsort(mean, kind="stable"):
        if len(starts) == count:
            break
        if all(abs(int(start) - s) >= length for s in starts):
            starts.append(int(start))
    return [s / fps for s in sorted(starts)]
