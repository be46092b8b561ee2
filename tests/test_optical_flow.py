"""The mean-optical-flow baseline: flow that is right where it can be, a magnitude per clip, a threshold, an AUC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from speednet.optical_flow import auc, dense_flow, fit_threshold, mean_flow_magnitude

rng = np.random.default_rng(0)
TEXTURE = ndimage.gaussian_filter(rng.standard_normal((160, 220)), 2.0).astype(np.float32)
TEXTURE = (TEXTURE - TEXTURE.min()) / np.ptp(TEXTURE)


def view(dx: float, dy: float, height: int = 64, width: int = 114) -> np.ndarray:
    """A window of the texture whose content has moved by (dx, dy) pixels."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    return ndimage.map_coordinates(TEXTURE, [rows + 48 - dy, cols + 53 - dx], order=3)


@pytest.mark.parametrize("dx, dy, tolerance_px", [(0.6, -0.3, 0.05), (2.3, 1.2, 0.1), (6.0, -4.0, 0.3)])
def test_flow_recovers_a_known_translation_of_a_textured_image(dx, dy, tolerance_px):
    flow = dense_flow(view(0, 0), view(dx, dy))[8:-8, 8:-8]  # borders see texture coming in: not measurable
    assert np.median(flow[..., 0]) == pytest.approx(dx, abs=tolerance_px)
    assert np.median(flow[..., 1]) == pytest.approx(dy, abs=tolerance_px)


def test_flow_of_a_flat_region_is_zero_not_bled_from_coarser_levels():
    rows, cols = np.mgrid[0:64, 0:114]
    disc = lambda cx: ndimage.gaussian_filter(((cols - cx) ** 2 + (rows - 32) ** 2 < 36).astype(np.float32), 0.7)
    flow = dense_flow(disc(40), disc(43))
    assert np.abs(flow[:, 80:]).max() < 1e-3  # far from the disc nothing moves


def to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat((gray[..., None] * 255).astype(np.uint8), 3, axis=-1)


def test_mean_flow_magnitude_measures_pixels_per_frame():
    still = to_rgb(np.stack([view(0, 0)] * 5))
    one = to_rgb(np.stack([view(k, 0) for k in range(5)]))
    two = to_rgb(np.stack([view(2 * k, 0) for k in range(5)]))
    assert mean_flow_magnitude(still, short_side_px=None) < 0.05
    assert mean_flow_magnitude(one, short_side_px=None) == pytest.approx(1.0, abs=0.15)
    assert mean_flow_magnitude(two, short_side_px=None) == pytest.approx(2.0, abs=0.3)


def test_mean_flow_magnitude_is_in_pixels_at_the_analysis_size():
    # 1 px/frame at 128 px short side is 0.5 px/frame once shrunk to 64.
    frames = to_rgb(np.stack([view(k, 0, height=128, width=200) for k in range(5)]))
    assert mean_flow_magnitude(frames, short_side_px=64) == pytest.approx(0.5, abs=0.1)


def test_threshold_classifier_separates_an_easy_toy_case():
    natural = rng.uniform(0.0, 1.0, 50)
    sped_up = rng.uniform(2.0, 3.0, 50)
    magnitudes = np.concatenate([natural, sped_up])
    labels = np.repeat([False, True], 50)
    clf = fit_threshold(magnitudes, labels)
    assert clf.sped_up_above and 1.0 <= clf.threshold <= 2.0
    assert clf.accuracy(magnitudes, labels) == 1.0
    flipped = fit_threshold(magnitudes, ~labels)  # a feature that points the other way is used the other way
    assert not flipped.sped_up_above and flipped.accuracy(magnitudes, ~labels) == 1.0


def test_threshold_is_the_best_possible_on_training_data():
    m = rng.normal(size=60)
    y = rng.random(60) < 0.5
    clf = fit_threshold(m, y)
    brute = max(max(np.mean((m > c) == y), np.mean((m < c) == y)) for c in np.concatenate([m - 1e-9, m + 1e-9]))
    assert clf.accuracy(m, y) == pytest.approx(brute)


def test_auc_counts_pairs_ranked_correctly_with_ties_as_half():
    scores = rng.integers(0, 5, 40).astype(float)
    labels = rng.random(40) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(scores, labels) == pytest.approx(pairwise)
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
