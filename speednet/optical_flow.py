"""The paper's mean-optical-flow baseline: "more pixels of motion = faster".

Dense flow per frame pair by coarse-to-fine Lucas–Kanade (numpy/scipy only), the
clip's feature is the mean flow magnitude, and a threshold fit on training clips
calls a clip sped up when its magnitude is above it. SpeedNet must beat this; on
data where the shortcut works it would not need to learn anything about motion.

Flow runs at a reduced size (short side 64 px by default) with all pairs of a clip
vectorised together, so a 16-frame clip costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

SHORT_SIDE_PX = 64


def to_gray(frames: np.ndarray, short_side_px: int | None = SHORT_SIDE_PX) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → (N, h, w) float32 luminance in 0..1, shrunk so min(h, w) ≈ short_side_px.

    Shrinking is blurred first (anti-aliased), so texture finer than the analysis grid does not alias into fake flow.
    """
    frames = np.asarray(frames)
    gray = (frames[..., 0] * np.float32(0.299 / 255) + frames[..., 1] * np.float32(0.587 / 255)
            + frames[..., 2] * np.float32(0.114 / 255)).astype(np.float32)
    factor = short_side_px / min(gray.shape[1:]) if short_side_px else 1.0
    if factor < 1.0:
        sigma = 0.5 / factor
        gray = ndimage.gaussian_filter(gray, sigma=(0, sigma, sigma), mode="nearest")
        gray = ndimage.zoom(gray, (1, factor, factor), order=1, prefilter=False, grid_mode=True, mode="nearest")
    return gray


def _downsample(images: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0), mode="nearest")[:, ::2, ::2]


def _upsample_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Carry a coarse flow field onto the next finer grid (each vector doubles: it is in pixels).

    Pixel replication then a 3×3 box: close to bilinear, and the finer level refines it anyway.
    """
    fine = 2.0 * flow.repeat(2, axis=1).repeat(2, axis=2)[:, :shape[0], :shape[1]]
    pad = ((0, 0), (0, shape[0] - fine.shape[1]), (0, shape[1] - fine.shape[2]), (0, 0))
    if any(p[1] for p in pad):
        fine = np.pad(fine, pad, mode="edge")
    return ndimage.uniform_filter(fine, size=(1, 3, 3, 1), mode="nearest")


def _warp(images: np.ndarray, flow: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """images(p + flow), bilinear, edges clamped; the N images are stacked into one tall 2-D image, which is much faster than 3-D interpolation."""
    n, h, w = images.shape
    y = np.clip(rows + flow[..., 1], 0, h - 1) + (np.arange(n, dtype=np.float32) * h)[:, None, None]
    x = np.clip(cols + flow[..., 0], 0, w - 1)
    return ndimage.map_coordinates(images.reshape(n * h, w), [y, x], order=1, mode="nearest")


def dense_flow(prev: np.ndarray, nxt: np.ndarray, *, levels: int = 4, window_px: int = 7, iterations: int = 3,
               regularisation: float = 1e-5) -> np.ndarray:
    """Lucas–Kanade flow, coarse to fine: (N, H, W) grey images → (N, H, W, 2) flow (dx, dy) in pixels, nxt(p + flow) ≈ prev(p).

    Each level solves the 2×2 normal equations of brightness constancy over a
    `window_px` box around every pixel; the pyramid lets it follow motions of several
    pixels per frame. `regularisation` pulls textureless regions (where flow is
    unknowable) to zero instead of letting noise decide it.
    """
    prev = np.asarray(prev, np.float32)
    nxt = np.asarray(nxt, np.float32)
    if prev.ndim == 2:
        return dense_flow(prev[None], nxt[None], levels=levels, window_px=window_px, iterations=iterations,
                          regularisation=regularisation)[0]
    levels = max(1, min(levels, int(np.log2(min(prev.shape[1:]) / 8)) + 1))
    pyr0, pyr1 = [prev], [nxt]
    for _ in range(levels - 1):
        pyr0.append(_downsample(pyr0[-1]))
        pyr1.append(_downsample(pyr1[-1]))
    size = (1, window_px, window_px)
    flow = np.zeros(pyr0[-1].shape + (2,), np.float32)
    for i0, i1 in zip(reversed(pyr0), reversed(pyr1)):
        if flow.shape[1:3] != i0.shape[1:]:
            flow = _upsample_flow(flow, i0.shape[1:])
        n, h, w = i0.shape
        iy, ix = np.gradient(i0, axis=(1, 2))
        sxx = ndimage.uniform_filter(ix * ix, size) + regularisation
        syy = ndimage.uniform_filter(iy * iy, size) + regularisation
        sxy = ndimage.uniform_filter(ix * iy, size)
        det = sxx * syy - sxy * sxy
        rows, cols = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
        for _ in range(iterations):
            it = _warp(i1, flow, rows, cols) - i0
            # The regularisation term pulls the *total* flow (not just the update) towards zero, so
            # coarse-level flow does not bleed into flat regions where no level can see motion.
            bx = ndimage.uniform_filter(ix * it, size) + regularisation * flow[..., 0]
            by = ndimage.uniform_filter(iy * it, size) + regularisation * flow[..., 1]
            # Gradients of prev stand in for those of the warped image (inverse-compositional style):
            # computed once per level, exact at convergence.
            flow[..., 0] -= np.clip((syy * bx - sxy * by) / det, -2, 2)
            flow[..., 1] -= np.clip((sxx * by - sxy * bx) / det, -2, 2)
    return flow


def flow_magnitudes(frames: np.ndarray, *, short_side_px: int | None = SHORT_SIDE_PX) -> np.ndarray:
    """Mean flow magnitude of each consecutive pair of (N, H, W, 3) uint8 frames: (N−1,) in px/frame at `short_side_px`."""
    gray = to_gray(frames, short_side_px)
    if len(gray) < 2:
        raise ValueError(f"need at least 2 frames for optical flow, got {len(gray)}")
    flow = dense_flow(gray[:-1], gray[1:])
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).mean(axis=(1, 2))


def mean_flow_magnitude(frames: np.ndarray, *, short_side_px: int | None = SHORT_SIDE_PX) -> float:
    """The baseline's clip feature: mean optical-flow magnitude over all pixels and consecutive pairs.

    In pixels per frame at a frame size whose short side is `short_side_px`, so clips of
    different resolutions are comparable.
    """
    return float(flow_magnitudes(frames, short_side_px=short_side_px).mean())


@dataclass(frozen=True)
class ThresholdClassifier:
    """Calls a clip sped up when its mean flow magnitude is above (or, if `sped_up_above` is False, below) `threshold`."""

    threshold: float
    sped_up_above: bool = True

    def predict(self, magnitudes: np.ndarray) -> np.ndarray:
        """True where the clip is predicted sped up."""
        m = np.asarray(magnitudes, dtype=np.float64)
        return m > self.threshold if self.sped_up_above else m < self.threshold

    def accuracy(self, magnitudes: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(magnitudes) == np.asarray(labels, dtype=bool)))


def fit_threshold(magnitudes: np.ndarray, labels: np.ndarray) -> ThresholdClassifier:
    """The threshold (and direction) with the best training accuracy; labels are True/1 for sped-up clips.

    Candidates are midpoints between sorted magnitudes, so this is the exact optimum of
    a one-feature decision stump.
    """
    m = np.asarray(magnitudes, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if m.shape != y.shape or m.size == 0:
        raise ValueError(f"magnitudes and labels must be the same non-empty shape, got {m.shape} and {y.shape}")
    order = np.argsort(m, kind="stable")
    m, y = m[order], y[order]
    # Threshold after position k (0..n): predict sped up for the n−k largest.
    sped_below = np.concatenate([[0], np.cumsum(y)])  # sped-up clips at or below each cut
    natural_below = np.arange(len(m) + 1) - sped_below
    correct_above = natural_below + (y.sum() - sped_below)  # natural below + sped up above
    correct_below = len(m) - correct_above
    cuts = np.concatenate([[m[0] - 1.0], (m[:-1] + m[1:]) / 2, [m[-1] + 1.0]])
    # Only cut between distinct values: a cut inside a tie would be unreachable by '>'.
    valid = np.concatenate([[True], m[1:] > m[:-1], [True]])
    above = np.where(valid, correct_above, -1)
    below = np.where(valid, correct_below, -1)
    if above.max() >= below.max():
        return ThresholdClassifier(float(cuts[above.argmax()]), True)
    return ThresholdClassifier(float(cuts[below.argmax()]), False)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the positive `labels` (Mann–Whitney U, ties counted half).

    0.5 means the score cannot tell the classes apart; 1.0 that it separates them perfectly.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative examples")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
