"""The anti-shortcut sampling: skip-frame rates, spatial augmentation, same-batch pairs, switches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from speednet.model import PRESETS
from speednet.sampling import (MAX_REDRAWS, NORMAL_RATE, SPED_UP_RATE, AugmentConfig, decoupled_times, make_batch,
                               skip_sample, spatial_augment)

CONFIG = PRESETS["cpu"]
T = CONFIG.clip_frames


def labelled_clips(n_clips: int, n_frames: int = 3 * T, h: int = 40, w: int = 56) -> list[np.ndarray]:
    """Flat-coloured clips that say where each frame came from: red = 10·clip, green = frame index."""
    clips = []
    for c in range(n_clips):
        clip = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
        clip[..., 0] = 10 * c
        clip[..., 1] = np.arange(n_frames)[:, None, None]
        clips.append(clip)
    return clips


def decoded(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(clip number per item, source frame indices per item) read back from a batch of labelled clips."""
    pixels = ((x[:, :, :, 0, 0] + 1) * 127.5).round().long().numpy()  # (N, 3, T)
    return pixels[:, 0, 0] // 10, pixels[:, 1, :]


def mean_gaps(sped_up: bool, draws: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([np.diff(skip_sample(3 * T, T, rng, sped_up)).mean() for _ in range(draws)])


def test_skip_sampling_rates_fall_in_the_papers_ranges():
    normal, sped_up = mean_gaps(False), mean_gaps(True)
    # A frame kept with probability 1/f leaves gaps of mean f; f is uniform over each range.
    assert NORMAL_RATE[0] <= normal.mean() <= NORMAL_RATE[1]
    assert normal.mean() == pytest.approx(np.mean(NORMAL_RATE), abs=0.03)
    assert SPED_UP_RATE[0] <= sped_up.mean() <= SPED_UP_RATE[1]
    assert sped_up.mean() == pytest.approx(np.mean(SPED_UP_RATE), abs=0.06)
    assert np.median(sped_up) > np.percentile(normal, 99)  # the two classes barely overlap


def test_skipped_indices_increase_strictly_within_the_3T_frames():
    rng = np.random.default_rng(1)
    for sped_up in (False, True):
        for _ in range(500):
            indices = skip_sample(3 * T, T, rng, sped_up)
            assert indices.shape == (T,) and indices.dtype == np.int64
            assert np.all(np.diff(indices) > 0) and 0 <= indices[0] and indices[-1] < 3 * T


def test_too_few_survivors_fall_back_to_a_regular_stride_at_the_drawn_rate():
    class DropsEverything:
        def uniform(self, low, high):
            return 2.0

        def random(self, n):
            return np.ones(n)

    assert skip_sample(3 * T, T, DropsEverything(), sped_up=True).tolist() == list(range(0, 2 * T, 2))
    assert MAX_REDRAWS >= 5


def test_clips_too_short_for_the_rate_are_refused():
    with pytest.raises(ValueError, match="too short"):
        skip_sample(T, T, np.random.default_rng(0), sped_up=True, temporal_aug=False)
    with pytest.raises(ValueError, match="3T"):
        skip_sample(T + 2, T, np.random.default_rng(0), sped_up=True)


def test_switches_off_give_deterministic_regular_strides_1_and_2():
    assert skip_sample(3 * T, T, None, sped_up=False, temporal_aug=False).tolist() == list(range(T))
    assert skip_sample(3 * T, T, None, sped_up=True, temporal_aug=False).tolist() == list(range(0, 2 * T, 2))
    off = AugmentConfig(temporal_aug=False, spatial_aug=False)
    x1, labels = make_batch(labelled_clips(3), CONFIG, np.random.default_rng(0), off)
    x2, _ = make_batch(labelled_clips(3), CONFIG, np.random.default_rng(99), off)
    assert torch.equal(x1, x2)
    _, frames = decoded(x1)
    assert frames[labels == 0].tolist() == [list(range(T))] * 3
    assert frames[labels == 1].tolist() == [list(range(0, 2 * T, 2))] * 3


def test_same_batch_holds_every_clip_both_normal_and_sped_up():
    B = 4
    x, labels = make_batch(labelled_clips(B), CONFIG, np.random.default_rng(0))
    assert x.shape == (2 * B, 3, T, CONFIG.input_size, CONFIG.input_size)
    assert labels.tolist() == [0.0] * B + [1.0] * B  # exactly half sped up
    clip_of, frames = decoded(x)
    assert clip_of.tolist() == list(range(B)) * 2  # item i and i + B come from clip i
    spans = frames[:, -1] - frames[:, 0]
    assert np.all(spans[B:] > spans[:B])  # the sped-up version covers more of the clip


def test_without_same_batch_each_clip_appears_once_with_a_random_balanced_label():
    n = 8
    assert AugmentConfig(same_batch=False).clips_per_batch(16) == 16
    assert AugmentConfig().clips_per_batch(16) == 8
    draws = []
    for seed in range(5):
        x, labels = make_batch(labelled_clips(n), CONFIG, np.random.default_rng(seed), AugmentConfig(same_batch=False))
        clip_of, _ = decoded(x)
        assert x.shape[0] == n and clip_of.tolist() == list(range(n))
        assert labels.sum().item() == n / 2
        draws.append(labels.tolist())
    assert len({tuple(d) for d in draws}) > 1  # which clip is sped up is random


def test_spatial_augmentation_output_shape_and_value_range():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (T, 90, 160, 3), dtype=np.uint8))
    for resize_px in [None, (18, 18), (CONFIG.input_size, CONFIG.input_size), (150, 150)]:
        out = spatial_augment(frames, CONFIG.input_size, rng, resize_px=resize_px)
        assert out.shape == (T, CONFIG.input_size, CONFIG.input_size, 3) and out.dtype == torch.uint8
    x, _ = make_batch([frames.numpy().repeat(3, axis=0)], CONFIG, rng)
    assert x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.1


def test_spatial_augmentation_is_random_per_clip_and_shared_by_its_frames():
    image = np.random.default_rng(1).integers(0, 256, (1, 90, 160, 3), dtype=np.uint8)
    still = torch.from_numpy(image.repeat(T, axis=0))
    outs = [spatial_augment(still, CONFIG.input_size, np.random.default_rng(seed)) for seed in range(4)]
    assert all(torch.equal(out[0], out[t]) for out in outs for t in range(T))  # one crop, scale, flip per clip
    assert len({out.numpy().tobytes() for out in outs}) == 4
    centre = [spatial_augment(still, CONFIG.input_size, np.random.default_rng(s), enabled=False) for s in range(2)]
    assert torch.equal(*centre)


def test_each_switch_can_be_set_independently():
    clips = labelled_clips(2)
    for same_batch, temporal_aug, spatial_aug in itertools.product([True, False], repeat=3):
        augment = AugmentConfig(same_batch=same_batch, temporal_aug=temporal_aug, spatial_aug=spatial_aug)
        x, labels = make_batch(clips, CONFIG, np.random.default_rng(0), augment)
        assert x.shape[0] == labels.shape[0] == (4 if same_batch else 2)
        assert x.shape[1:] == (3, T, CONFIG.input_size, CONFIG.input_size)


def stutter(times: np.ndarray) -> float:
    """How unevenly a version's frames are spaced: the coefficient of variation of its steps (0: smooth)."""
    steps = np.diff(times)
    return float(steps.std() / steps.mean())


def test_decoupled_versions_move_at_their_labels_speed_and_stutter_alike_whatever_the_label():
    """Under "mixed" the stutter of regular resampling grows with the rate, so it tells the label; "decoupled" must not."""
    rng = np.random.default_rng(0)
    draws = {label: [decoupled_times(T, rng, label) for _ in range(4000)] for label in (False, True)}
    for label, (low, high) in ((False, NORMAL_RATE), (True, SPED_UP_RATE)):
        smooth = [t for t in draws[label] if stutter(t) < 1e-9]  # r = 1, or regular at r < 1 + 1/T
        assert 1 / 3 - 0.03 < len(smooth) / len(draws[label]) < 1 / 3 + 0.08
        assert np.mean([low / (1 + 1 / T) <= t[1] - t[0] <= high for t in smooth]) > 0.9  # else drops kept a run
        mean_speed = np.mean([(t[-1] - t[0]) / (T - 1) for t in draws[label]])
        assert low - 0.05 <= mean_speed <= high + 0.15  # random drops make the first and last frame's span vary
    natural, fast = ([stutter(t) for t in draws[label]] for label in (False, True))
    assert abs(np.mean(natural) - np.mean(fast)) < 0.03 and abs(np.median(natural) - np.median(fast)) < 0.03
    mixed = {label: [stutter(skip_sample(3 * T, T, rng, label, sampler="regular")) for _ in range(2000)]
             for label in (False, True)}
    assert abs(np.mean(mixed[False]) - np.mean(mixed[True])) > 0.05  # the tie "decoupled" cuts is there without it


class DrawnClip:
    """A clip drawable at any time (as a procedural scene): frame value = 10 × the time asked, in frame periods."""

    def __len__(self) -> int:
        return 3 * T

    def take(self, index_sets):
        return [np.broadcast_to((10 * np.asarray(t, dtype=float))[:, None, None, None], (len(t), 32, 32, 3))
                .astype(np.uint8).copy() for t in index_sets]


def test_decoupled_batches_draw_scenes_at_fractional_times_and_stored_clips_as_mixed():
    augment = AugmentConfig(spatial_aug=False, temporal_sampler="decoupled")
    config = PRESETS["cpu"].__class__(**{**PRESETS["cpu"].__dict__, "input_size": 32})
    x, labels = make_batch([DrawnClip() for _ in range(8)], config, np.random.default_rng(1), augment)
    times = ((x[:, 0, :, 0, 0] + 1) * 127.5 / 10).numpy()  # frames of each item, back in frame periods
    fractional = np.abs(times - np.round(times)) > 0.05
    assert fractional.any()  # drawn between stored frames: a speed no stored clip has
    assert labels.tolist() == [0.0] * 8 + [1.0] * 8
    x, _ = make_batch(labelled_clips(4), CONFIG, np.random.default_rng(1), augment)  # stored clips: whole frames
    assert x.shape == (8, 3, T, CONFIG.input_size, CONFIG.input_size)
