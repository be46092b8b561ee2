"""Numpy rasterisation for synthetic scenes: anti-aliased shapes, textures, backgrounds, camera effects.

Frames are float32 (H, W, 3) in 0..255 while being composed. Shapes are drawn only
inside their bounding box, with coverage from a signed distance, so one frame of a
few objects costs well under a millisecond beyond the full-frame passes
(background window, flicker, sensor noise) that every frame needs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


# ----------------------------------------------------------------------------- shapes

def _bbox(x_min: float, x_max: float, y_min: float, y_max: float, height: int, width: int):
    c0, c1 = max(int(np.floor(x_min)), 0), min(int(np.ceil(x_max)) + 1, width)
    r0, r1 = max(int(np.floor(y_min)), 0), min(int(np.ceil(y_max)) + 1, height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _grid(box):
    r0, r1, c0, c1 = box
    return np.arange(r0, r1, dtype=np.float32)[:, None], np.arange(c0, c1, dtype=np.float32)[None, :]


def coverage(signed_distance: np.ndarray, softness_px: float) -> np.ndarray:
    """Fraction of each pixel inside a shape, from the signed distance to its edge (negative inside).

    A ramp one `softness_px` wide is box-filter anti-aliasing at 1 px and defocus blur above it.
    """
    return np.clip(0.5 - signed_distance / softness_px, 0.0, 1.0)


def disc(height: int, width: int, cx: float, cy: float, radius_px: float, softness_px: float = 1.0):
    """Bounding box and coverage of a disc centred at pixel (cx, cy); None when it is off the frame."""
    pad = radius_px + softness_px
    box = _bbox(cx - pad, cx + pad, cy - pad, cy + pad, height, width)
    if box is None:
        return None
    rows, cols = _grid(box)
    dist = np.sqrt((cols - cx) ** 2 + (rows - cy) ** 2) - radius_px
    return box, coverage(dist, softness_px)


def rectangle(height: int, width: int, cx: float, cy: float, half_w_px: float, half_h_px: float,
              softness_px: float = 1.0, corner_px: float = 0.0):
    """Bounding box and coverage of an axis-aligned box (optionally rounded corners)."""
    pad = softness_px
    box = _bbox(cx - half_w_px - pad, cx + half_w_px + pad, cy - half_h_px - pad, cy + half_h_px + pad, height, width)
    if box is None:
        return None
    rows, cols = _grid(box)
    qx = np.abs(cols - cx) - (half_w_px - corner_px)
    qy = np.abs(rows - cy) - (half_h_px - corner_px)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0)
    return box, coverage(outside + inside - corner_px, softness_px)


def polyline(height: int, width: int, points_px: np.ndarray, half_width_px: float, softness_px: float = 1.0):
    """Bounding box and coverage of a thick polyline (rods, strings, spring coils) through (K, 2) points (x, y)."""
    pts = np.asarray(points_px, dtype=np.float32)
    pad = half_width_px + softness_px
    box = _bbox(pts[:, 0].min() - pad, pts[:, 0].max() + pad, pts[:, 1].min() - pad, pts[:, 1].max() + pad, height, width)
    if box is None:
        return None
    r0, _, c0, _ = box
    best = np.full((box[1] - box[0], box[3] - box[2]), np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        # Each segment only within its own bounding box: a long diagonal coil stays cheap.
        seg = _bbox(min(ax, bx) - pad, max(ax, bx) + pad, min(ay, by) - pad, max(ay, by) + pad, height, width)
        if seg is None:
            continue
        rows, cols = _grid(seg)
        dx, dy = bx - ax, by - ay
        t = np.clip(((cols - ax) * dx + (rows - ay) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
        sub = best[seg[0] - r0:seg[1] - r0, seg[2] - c0:seg[3] - c0]
        np.minimum(sub, np.sqrt((cols - ax - t * dx) ** 2 + (rows - ay - t * dy) ** 2), out=sub)
    return box, coverage(best - half_width_px, softness_px)


def coil(height: int, width: int, x: float, y_top: float, y_bottom: float, half_span_px: float, turns: int,
         half_width_px: float, softness_px: float = 1.0):
    """Bounding box and coverage of a vertical zigzag spring coil between rows y_top and y_bottom, centred on column x.

    Distance to the zigzag is taken in closed form (offset from the triangle wave, times the
    cosine of its slope) rather than segment by segment: one pass however many turns.
    """
    pad = half_span_px + half_width_px + softness_px
    box = _bbox(x - pad, x + pad, y_top, y_bottom, height, width)
    if box is None or y_bottom - y_top < 1e-3:
        return None
    rows, cols = _grid(box)
    period = (y_bottom - y_top) / turns
    phase = ((rows - y_top) / period) % 1.0
    zig = half_span_px * (1.0 - 4.0 * np.abs(phase - 0.5))
    slope = 4.0 * half_span_px / period
    dist = np.abs(cols - x - zig) / np.float32(np.sqrt(1.0 + slope * slope))
    return box, coverage(dist - half_width_px, softness_px)


def paint(frame: np.ndarray, shape, colour) -> None:
    """Alpha-blend `colour` (RGB, or an (h, w, 3) texture of the bounding box) into `frame` in place."""
    if shape is None:
        return
    (r0, r1, c0, c1), alpha = shape
    region = frame[r0:r1, c0:c1]
    a = alpha[..., None]
    region += a * (np.asarray(colour, dtype=np.float32) - region)


# ----------------------------------------------------------------------------- textures

PATTERNS = ("flat", "stripes", "checker", "spots", "ring")


def texture(shape, *, cx: float, cy: float, angle_rad: float, scale_px: float, pattern: str,
            colour_a, colour_b, shading: float = 0.0, radius_px: float = 1.0) -> np.ndarray | None:
    """Colours of a patterned surface over a shape's bounding box, turned by `angle_rad` about (cx, cy).

    The pattern rotates with the object, so spin is visible; `shading` darkens away from
    a light at the top left, which makes a disc read as a ball.
    """
    if shape is None:
        return None
    (r0, r1, c0, c1), _ = shape
    rows, cols = _grid((r0, r1, c0, c1))
    dx, dy = cols - cx, rows - cy
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    u, v = (c * dx + s * dy) / scale_px, (-s * dx + c * dy) / scale_px
    if pattern == "stripes":
        mix = (np.sin(2 * np.pi * u) > 0).astype(np.float32)
    elif pattern == "checker":
        mix = ((np.floor(u * 2) + np.floor(v * 2)) % 2).astype(np.float32)
    elif pattern == "spots":
        mix = ((np.sin(2 * np.pi * u) * np.sin(2 * np.pi * v)) > 0.5).astype(np.float32)
    elif pattern == "ring":
        mix = ((u * u + v * v) < 0.3).astype(np.float32)
    else:
        mix = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    a, b = np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32)
    out = a + mix[..., None] * (b - a)
    if shading:
        light = np.sqrt((dx + 0.4 * radius_px) ** 2 + (dy + 0.4 * radius_px) ** 2) / (1.4 * radius_px)
        out *= (1.0 - shading * np.clip(light, 0, 1) ** 2)[..., None]
    return out


# ----------------------------------------------------------------------------- backgrounds

def smooth_noise(rng: np.random.Generator, height: int, width: int, scale_px: float) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit spread: blotches ~`scale_px` wide."""
    small = max(scale_px / 4.0, 1.0)
    h, w = int(np.ceil(height / small)) + 2, int(np.ceil(width / small)) + 2
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 2.0, mode="wrap")
    field = ndimage.zoom(field, small, order=1)[:height, :width]
    return (field - field.mean()) / (field.std() + 1e-6)


def gradient_background(rng: np.random.Generator, height: int, width: int, colour_a, colour_b) -> np.ndarray:
    """A linear gradient between two colours at a random angle (sky, lit wall)."""
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(angle) * cols / width + np.sin(angle) * rows / height
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    a, b = np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32)
    return a + ramp[..., None] * (b - a)


def noise_background(rng: np.random.Generator, height: int, width: int, colour_a, colour_b, scale_px: float) -> np.ndarray:
    """Two colours mixed by smooth noise (plaster, foliage, carpet)."""
    mix = np.clip(0.5 + 0.25 * smooth_noise(rng, height, width, scale_px), 0, 1)
    a, b = np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32)
    return a + mix[..., None] * (b - a)


def photo_background(rng: np.random.Generator, height: int, width: int, scale_px: float) -> np.ndarray:
    """A static photo-like texture: multi-octave colour noise, a horizon, and blurred blobs and blocks.

    Not a photograph, but it has what matters to a motion model: structure at every scale,
    edges, and colour variation, so camera pan produces real optical flow everywhere.
    """
    out = np.zeros((height, width, 3), np.float32)
    for octave in range(4):
        s = scale_px / 2**octave
        weight = 0.5**octave
        tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
        out += weight * smooth_noise(rng, height, width, s)[..., None] * tint
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    out = base + 28.0 * out
    horizon = int(rng.uniform(0.2, 0.6) * height)
    out[:horizon] = 0.6 * out[:horizon] + 0.4 * rng.uniform(100, 230, size=3).astype(np.float32)
    for _ in range(rng.integers(6, 16)):
        cx, cy = rng.uniform(0, width), rng.uniform(horizon * 0.5, height)
        colour = rng.uniform(20, 235, size=3)
        if rng.random() < 0.5:
            shape = disc(height, width, cx, cy, rng.uniform(0.02, 0.12) * height, softness_px=rng.uniform(1, 6))
        else:
            shape = rectangle(height, width, cx, cy, rng.uniform(0.02, 0.2) * height, rng.uniform(0.02, 0.2) * height,
                              softness_px=rng.uniform(1, 4))
        if shape is not None:  # half-transparent, like things seen through haze
            paint(out, (shape[0], shape[1] * rng.uniform(0.4, 0.9)), colour)
    return out


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian defocus of an (H, W, 3) image; a no-op at sigma 0."""
    if sigma_px <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma=(sigma_px, sigma_px, 0), mode="nearest")


# ----------------------------------------------------------------------------- camera and sensor

class CameraView:
    """Views of a static canvas at sub-pixel offsets: how the camera pans and shakes over the background.

    Offsets are rounded to 1/`subpixel` px and each shifted copy of the canvas is made
    once (bilinear) and reused, so a frame's background costs one slice-copy instead of
    six full-frame passes; 1/4 px is far below what H.264 at CRF 20 keeps anyway.
    """

    def __init__(self, canvas: np.ndarray, height: int, width: int, subpixel: int = 4):
        self.canvas, self.height, self.width, self.subpixel = canvas, height, width, subpixel
        self._shifted: dict[tuple[int, int], np.ndarray] = {}

    def _shifted_canvas(self, qx: int, qy: int) -> np.ndarray:
        key = (qx, qy)
        if key not in self._shifted:
            fx, fy = np.float32(qx / self.subpixel), np.float32(qy / self.subpixel)
            c = self.canvas
            rows = c[:-1] + fy * (c[1:] - c[:-1]) if qy else c[:-1]
            self._shifted[key] = rows[:, :-1] + fx * (rows[:, 1:] - rows[:, :-1]) if qx else rows[:, :-1]
        return self._shifted[key]

    def at(self, x_px: float, y_px: float) -> np.ndarray:
        """A fresh float32 (height, width, 3) frame whose top-left corner sits at canvas point (x_px, y_px)."""
        qx_total = int(round(x_px * self.subpixel))
        qy_total = int(round(y_px * self.subpixel))
        x0, qx = divmod(qx_total, self.subpixel)
        y0, qy = divmod(qy_total, self.subpixel)
        return self._shifted_canvas(qx, qy)[y0:y0 + self.height, x0:x0 + self.width].copy()


def noise_bank(rng: np.random.Generator, count: int, height: int, width: int, sigma: float) -> np.ndarray:
    """`count` frames of Gaussian sensor noise; frames pick one at random, which is far cheaper than fresh noise.

    The +0.5 that rounds to the nearest uint8 level is folded in, to save a pass per frame.
    """
    return (sigma * rng.standard_normal((count, height, width, 1)) + 0.5).astype(np.float32)


def finish(frame: np.ndarray, gain: float, noise: np.ndarray | None) -> np.ndarray:
    """Apply the lighting gain and sensor noise (from `noise_bank`), and round to uint8 like a camera does."""
    if gain != 1.0:
        frame *= np.float32(gain)
    frame += noise if noise is not None else np.float32(0.5)
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)
