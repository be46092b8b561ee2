"""Spatial speediness maps: their shape and values, that they point at what moves, and where they are written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _catalog import register, rows
from _pan import HEIGHT, PAN_PX, WIDTH, pan, texture, write_pan_video
from speednet.maps import SpeedinessMap, cell_of, heat_colours, speediness_map, stretched, strip
from speednet.model import build_speednet
from storage import objects

SQUARE_PX = 36


def square_clip(rng: np.random.Generator, top: int, left: int, frames: int = 16) -> np.ndarray:
    """A still texture with one square of it replaced by texture panning at 2x the pan model's natural speed."""
    moving = pan(texture(rng, 400), np.full(frames, 2 * PAN_PX))
    clip = np.repeat(texture(rng, WIDTH)[None], frames, 0).copy()
    clip[:, top:top + SQUARE_PX, left:left + SQUARE_PX] = moving[:, top:top + SQUARE_PX, left:left + SQUARE_PX]
    return clip


def test_a_map_has_the_frames_shape_and_holds_probabilities():
    torch_model = build_speednet(preset="cpu")
    frames = (np.random.default_rng(0).random((16, 90, 160, 3)) * 255).astype(np.uint8)
    for size in (64, 128):
        result = speediness_map(torch_model, frames, size)
        assert result.frames.shape == (16, 90, 160)
        assert result.cells.ndim == 3 and result.cells.shape[1] == size // 32 < result.cells.shape[2]
        for values in (result.cells, result.frames):
            assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
        assert 0.0 <= result.p_sped_up <= 1.0
    heat, low, high = stretched(np.array([0.90, 0.95, 0.99], dtype=np.float32))  # a saturated map still shows where
    assert heat.tolist() == pytest.approx([0.0, 5 / 9, 1.0], abs=1e-5) and (low, high) == pytest.approx((0.90, 0.99))
    flat = np.full(3, 0.5, dtype=np.float32)
    assert stretched(flat)[0] is flat, "a flat map is not blown up into noise"
    heat = np.linspace(0, 1, 16 * 90 * 160, dtype=np.float32).reshape(16, 90, 160)
    picture = strip(frames, heat, columns=4)
    assert picture.shape == (2 * 90 + 2, 4 * 160 + 3 * 2, 3) and picture.dtype == np.uint8
    assert heat_colours(np.array([0.0, 1.0])).tolist() == [[0, 0, 4], [252, 255, 164]]


def test_the_hottest_cell_is_read_off_logits_where_probabilities_saturate():
    logits = np.zeros((2, 2, 3), np.float32)
    logits[:, 1, 2], logits[:, 0, 0] = 30.0, 20.0  # both P = 1.0 in float32; the later cell is surer
    result = SpeedinessMap(logits, np.zeros((16, 64, 96), np.float32), 1.0)
    assert result.cells[0, 0, 0] == result.cells[0, 1, 2] == 1.0
    assert result.hottest_cell() == (1, 2)


PLACEMENTS = [(0, 0), (0, WIDTH - SQUARE_PX), (HEIGHT - SQUARE_PX, 0), (HEIGHT - SQUARE_PX, WIDTH - SQUARE_PX), (14, 30)]


def test_the_hottest_cell_lies_on_the_one_moving_square(pan_model):
    hits, chance, hotter = [], [], []
    for top, left in PLACEMENTS:
        for seed in range(4):
            clip = square_clip(np.random.default_rng([seed, top, left]), top, left)
            result = speediness_map(pan_model, clip, input_size=128)
            grid = result.cells.shape[1:]
            (row_lo, col_lo), (row_hi, col_hi) = cell_of(np.array([left, left + SQUARE_PX - 1]),
                                                         np.array([top, top + SQUARE_PX - 1]), clip.shape[1:3], grid)
            row, col = result.hottest_cell()
            hits.append(row_lo <= row <= row_hi and col_lo <= col <= col_hi)
            chance.append((row_hi - row_lo + 1) * (col_hi - col_lo + 1) / (grid[0] * grid[1]))
            inside = np.zeros(clip.shape[1:3], bool)
            inside[top:top + SQUARE_PX, left:left + SQUARE_PX] = True
            hotter.append(result.frames[:, inside].mean() > result.frames[:, ~inside].mean())
    # a random cell would land on the square about half the time (its cells' share of the grid)
    assert np.mean(hits) >= 0.85 > np.mean(chance) + 0.3, (np.mean(hits), np.mean(chance))
    assert np.mean(hotter) >= 0.9, "the square is hotter on average than the still picture around it"


def test_explain_writes_a_strip_and_an_overlay_and_records_them(tmp_path, home, pan_model):
    video = write_pan_video(tmp_path / "pan.mp4", speeds=[1.0, 2.0], frames_each=40, seed=4)
    model_id = register(home, pan_model)  # also creates the catalog, where the row goes
    run = subprocess.run([sys.executable, "-m", "flows.cli", "explain", str(video), "--at", "1.8", "--speed", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    ((png, mp4, p, grid_rows, grid_cols),) = rows(home, "SELECT png_path, mp4_path, p_sped_up, grid_rows, grid_cols "
                                                       "FROM speediness_maps WHERE model_id = ?", [model_id])
    assert png.startswith(str(home / "plots" / "maps")) and png in run.stdout + run.stderr
    image = Image.open(png)
    # four frames (the source's 96 x 64: never enlarged for display) above their overlays, under a caption
    assert (image.width, image.height) == (4 * WIDTH + 3 * 2, 2 * HEIGHT + 2 + 18)
    assert objects.size(mp4) > 1000 and (grid_rows, grid_cols) == (4, 6)
    assert p > 0.5, "the window lies in the 2x half"

    late = subprocess.run([sys.executable, "-m", "flows.cli", "explain", str(video), "--at", "60"],
                          capture_output=True, text=True, timeout=300)
    said = late.stdout + late.stderr
    assert late.returncode == 1 and "cannot explain" in said and "pick an earlier --at" in said
    assert "Traceback" not in said
