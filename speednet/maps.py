"""Where in the frame a clip looks sped up: SpeedNet's per-cell answers as a probability map over the picture.

The head is fully convolutional (``SpeedNet.logit_map``): every space-time cell of the
backbone's output has its own sped-up logit, and the clip's answer pools them (max over
space, mean over time). Shown over the frames, the cells say which part of the picture
drives that answer (the paper's Fig. 7). The model's input stride is 32 px, so at the CPU
preset's 64 px a 16:9 frame has only 2 × 4 cells; a fully convolutional model may be fed a
larger picture (``input_size``), which gives a finer map of the same network at the cost
of asking it about larger objects than it learnt on (bench/map_validity.py measures which
size answers best).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit

from speednet.model import SpeedNet, normalize_uint8, pool_logits
from speednet.sampling import resize_short_side

# A perceptual heat scale (black → purple → red → orange → pale yellow), as (position, RGB) anchors.
_HEAT = np.array([[0.0, 0, 0, 4], [0.25, 87, 16, 110], [0.5, 188, 55, 84], [0.75, 249, 142, 9], [1.0, 252, 255, 164]])


@dataclass(frozen=True)
class SpeedinessMap:
    """P(sped up) of every space-time cell of one window, and the same upsampled onto its frames."""

    cell_logits: np.ndarray  # (T', H', W') float32: each cell's sped-up logit (does not saturate as P does)
    frames: np.ndarray  # (T, H, W) float32 in [0, 1]: P of the cells over every frame, at the frames' size
    p_sped_up: float  # the window's own answer (cells pooled as the model pools them)

    @property
    def cells(self) -> np.ndarray:
        """(T', H', W') float32 P(sped up) of every cell."""
        return expit(self.cell_logits)  # no overflow warning at large negative logits

    def hottest_cell(self) -> tuple[int, int]:
        """(row, column) of the cell most sure the clip is sped up, its logit averaged over the window's time.

        Logits, as the model pools them: several cells at P = 1.0 in float32 would tie, and the
        first of them (the top-left one) would win whatever the network saw.
        """
        mean = self.cell_logits.mean(axis=0)
        row, col = np.unravel_index(int(np.argmax(mean)), mean.shape)
        return int(row), int(col)


@torch.no_grad()
def speediness_map(model: SpeedNet, frames: np.ndarray, input_size: int | None = None) -> SpeedinessMap:
    """The map of one window: (T, H, W, 3) uint8 frames, fed with their short side at ``input_size``.

    ``input_size`` defaults to the model's own (what scoring uses). The decision threshold a
    run calibrated is in the classifier's bias, so 0.5 is the model's cut here too.
    """
    model.eval()
    device = next(model.parameters()).device
    size = input_size or model.config.input_size
    x = normalize_uint8(resize_short_side(frames, size)[None]).to(device)
    logits = model.logit_map(x).float()
    cells = torch.sigmoid(logits)[0]  # (T', H', W')
    height, width = frames.shape[1:3]
    upsampled = F.interpolate(cells[None, None], size=(len(frames), height, width), mode="trilinear",
                              align_corners=False)[0, 0]
    return SpeedinessMap(logits[0].cpu().numpy(), upsampled.clamp(0, 1).cpu().numpy(),
                         float(torch.sigmoid(pool_logits(logits))[0]))


def cell_of(x_px: np.ndarray, y_px: np.ndarray, frame_hw: tuple[int, int], grid_hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) (row, column) of the map cells holding frame points (x, y); points outside clip to the edge cells."""
    rows = np.clip((np.asarray(y_px) / frame_hw[0] * grid_hw[0]).astype(int), 0, grid_hw[0] - 1)
    cols = np.clip((np.asarray(x_px) / frame_hw[1] * grid_hw[1]).astype(int), 0, grid_hw[1] - 1)
    return np.stack([rows, cols], axis=1)


def heat_colours(p: np.ndarray) -> np.ndarray:
    """(…) probabilities → (…, 3) uint8 colours of the heat scale."""
    p = np.clip(np.asarray(p, dtype=np.float32), 0, 1)
    return np.stack([np.interp(p, _HEAT[:, 0], _HEAT[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.uint8)


def stretched(probabilities: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Probabilities rescaled so the window's lowest is 0 and highest 1 (a saturated map still shows where), and
    that (low, high) range; a flat map stays as it is."""
    low, high = float(probabilities.min()), float(probabilities.max())
    if high - low < 1e-4:
        return probabilities, low, high
    return (probabilities - low) / (high - low), low, high


def overlay(frames: np.ndarray, heat_values: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with the heat of (T, H, W) values in [0, 1] laid over them."""
    heat = heat_colours(heat_values).astype(np.float32)
    return (frames.astype(np.float32) * (1 - opacity) + heat * opacity).round().astype(np.uint8)


def strip(frames: np.ndarray, heat_values: np.ndarray, columns: int = 4, gap_px: int = 2) -> np.ndarray:
    """One image: ``columns`` frames spread over the window (top row) above their overlays (bottom row)."""
    picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
    shown = overlay(frames[picks], heat_values[picks])
    height, width = frames.shape[1:3]
    image = np.full((2 * height + gap_px, columns * width + (columns - 1) * gap_px, 3), 255, dtype=np.uint8)
    for i, index in enumerate(picks):
        x = i * (width + gap_px)
        image[:height, x:x + width] = frames[index]
        image[height + gap_px:, x:x + width] = shown[i]
    return image
