"""Held-out evaluation sees whole frames, as the scorer does, whatever the clips' aspect ratios."""

import numpy as np
import torch

from speednet.evaluation import speednet_scores
from speednet.model import build_speednet
from speednet.sampling import resize_short_side


def test_evaluation_resize_keeps_the_edges_of_a_wide_picture():
    frames = np.zeros((4, 90, 160, 3), np.uint8)
    frames[:, 40:50, :12] = 255  # a bright object at the far left, outside any centre square
    out = resize_short_side(frames, 64)
    assert out.shape == (4, 64, 114, 3) and out.dtype == torch.uint8
    assert out[:, 28:36, :6].float().mean() > 200  # still there, scaled with the picture
    assert out[:, :, 25:89].float().max() < 50  # a centre square would have missed it


def test_scores_of_mixed_aspect_ratios_come_back_in_clip_order():
    torch.manual_seed(0)
    model = build_speednet(preset="cpu")
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (32, 72, 128, 3), dtype=np.uint8)
    square = rng.integers(0, 255, (32, 96, 96, 3), dtype=np.uint8)
    tall = rng.integers(0, 255, (32, 120, 80, 3), dtype=np.uint8)
    with torch.no_grad():  # a fresh network's eval-mode output is constant; real BN statistics make it vary
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 16, 64, 64))
    natural, fast = speednet_scores(model, [wide, square, tall, wide], batch_size=2)
    assert natural.shape == fast.shape == (4,)
    for index, clip in enumerate([wide, square, tall]):
        alone_natural, alone_fast = speednet_scores(model, [clip])
        np.testing.assert_allclose([natural[index], fast[index]], [alone_natural[0], alone_fast[0]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([natural[3], fast[3]], [natural[0], fast[0]], rtol=1e-4, atol=1e-5)
    assert not np.allclose(natural[:3], natural[0])  # different clips, different scores: nothing was mixed up
