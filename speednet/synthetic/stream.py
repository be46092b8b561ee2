"""Procedural training clips: a fresh physics scene for every clip, never repeated.

A finite set of scenes gets memorised (1,340 scenes: train 0.87, held-out 0.62), so the
training source draws a new scene for every clip and renders, straight at the model's
input size, only the frames the sampled versions need. No file, no codec: a few
milliseconds a frame, in the loader workers.

Seeds. Scene k of stream s of a run with seed r is drawn from the seed sequence
``(STREAM_TAG, r, s, k)``. Every library and evaluation set is drawn from ``(seed, k)``
with a seed far below ``STREAM_TAG``; since numpy pads a short sequence with zeros,
``(STREAM_TAG, r, s, k)`` could only equal ``(seed, k')`` if ``seed == STREAM_TAG``, which
``check_evaluation_seed`` refuses. So no training clip is ever an evaluation scene.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from speednet.synthetic.library import render_frames
from speednet.synthetic.scenes import DEFAULT_SIZES, SceneParams, sample_scene

STREAM_TAG = 0x5EED_57E4  # first word of every training stream's seed sequence (1,592,612,836)
# The held-out scenes the recipe curves and the reference model's targets are measured on.
EVALUATION_SEED = 7_000_001
# The stream a run's decision-threshold calibration draws its scenes from: far above the
# loader streams (rank × workers, plus one set per resume), so it never meets a training clip.
CALIBRATION_STREAM = 1 << 20


def check_evaluation_seed(seed: int) -> int:
    """``seed`` if scenes drawn from (seed, k) can never be training-stream scenes, else ValueError."""
    if seed == STREAM_TAG:
        raise ValueError(f"seed {seed} is the training stream's tag; evaluation scenes need another seed")
    return seed


def stream_seed(run_seed: int, stream: int, k: int) -> tuple[int, int, int, int]:
    """Seed sequence of scene ``k`` of training stream ``stream`` (one per rank × loader worker and resume)."""
    return (STREAM_TAG, int(run_seed), int(stream), int(k))


@dataclass
class SceneClip:
    """A 3T-frame clip of a scene from ``start_s``, drawn on demand: ``take`` renders only the frames asked for."""

    scene: SceneParams
    start_s: float
    n_frames: int

    def __len__(self) -> int:
        return self.n_frames

    def take(self, index_sets: list[np.ndarray]) -> list[np.ndarray]:
        """(len(indices), H, W, 3) uint8 frames for each index set; frames shared by sets are drawn once."""
        wanted = np.unique(np.concatenate(index_sets))
        frames = np.concatenate(list(render_frames(self.scene, self.start_s + wanted / self.scene.fps)))
        return [frames[np.searchsorted(wanted, indices)] for indices in index_sets]


@dataclass(frozen=True)
class SceneStreamConfig:
    """How procedural clips look: drawn at ``size_px`` on the short side, in the library's frame shapes."""

    size_px: int = 64
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES  # frame shapes (w, h) to draw, ∝ 1/area² as the library
    fps_choices: tuple[float, ...] = (24, 25, 30)
    duration_s: tuple[float, float] = (5.0, 10.0)  # the scene's span, from which a clip's start is drawn
    clip_frames: int = 48  # 3T: the frames a clip spans at natural speed before sampling

    def frame_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) drawn for a library shape: short side ``size_px``, aspect kept."""
        scale = self.size_px / min(width, height)
        return max(self.size_px, round(width * scale)), max(self.size_px, round(height * scale))


def draw_clip(seed: Sequence[int], config: SceneStreamConfig, shape: tuple[int, int]) -> SceneClip:
    """A fresh scene from ``seed`` drawn at ``shape`` (w, h), and a clip of it from a random start."""
    rng = np.random.default_rng(list(seed))
    width, height = shape
    scene = sample_scene(rng, width=width, height=height, duration_s=config.duration_s, fps_choices=config.fps_choices)
    start_s = float(rng.uniform(0.0, scene.duration_s))
    return SceneClip(scene, start_s, config.clip_frames)


def draw_shape(rng: np.random.Generator, config: SceneStreamConfig) -> tuple[int, int]:
    """One library frame shape (∝ 1/area², as ``sample_scene``), at the stream's size."""
    weights = np.array([1.0 / (w * h) ** 2 for w, h in config.sizes])
    w, h = config.sizes[rng.choice(len(config.sizes), p=weights / weights.sum())]
    return config.frame_shape(w, h)


@dataclass
class SceneClipBatches(IterableDataset):
    """Endless training batches of fresh scenes; each batch one frame shape (the model is fully convolutional).

    ``make_batch(clips, rng=...)`` turns the clips into model inputs (e.g. the same-batch
    pair), as for stored clips; it runs in the loader workers.
    """

    clips_per_batch: int
    make_batch: Callable
    seed: int
    config: SceneStreamConfig = field(default_factory=SceneStreamConfig)
    rank: int = 0
    first_stream: int = 0  # a resumed run starts new streams, so it never redraws a scene
    # For a curriculum: ``augment_at(step)`` is passed to make_batch as ``augment``. A worker
    # reckons the training step from the batches it made: ``share`` of the batches are its
    # kind, and the loader's workers take turns.
    augment_at: Callable | None = None
    first_step: int = 0
    share: float = 1.0

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        stream = self.first_stream + self.rank * num_workers + worker
        rng = np.random.default_rng([STREAM_TAG, self.seed, stream, 0, 1])  # shapes and sampling: not a scene seed
        for batch in itertools.count():
            shape = draw_shape(rng, self.config)
            clips = [draw_clip(stream_seed(self.seed, stream, batch * self.clips_per_batch + i), self.config, shape)
                     for i in range(self.clips_per_batch)]
            if self.augment_at is None:
                yield self.make_batch(clips, rng=rng)
            else:
                step = self.first_step + round((batch * num_workers + worker) / self.share)
                yield self.make_batch(clips, rng=rng, augment=self.augment_at(step))


def evaluation_clips(count: int, *, seed: int = EVALUATION_SEED, size_px: int = 64, clip_frames: int = 48,
                     times: np.ndarray | None = None) -> list[np.ndarray]:
    """Held-out natural-speed clips, (clip_frames or len(times), H, W, 3) uint8, short side ``size_px``, whole frames.

    Scene k is scene k of ``write_synthetic_library(seed=seed)`` (drawn at its library size,
    then resized as decoding does), from a random start: the in-memory twin of the files the
    reference model's targets are measured on. ``times`` (in natural frame periods from that
    start, each below ``clip_frames``) draws other frames than 0 … clip_frames − 1: footage at
    another physics speed, or through another frame pattern (bench/stutter.py).
    """
    check_evaluation_seed(seed)
    return _library_clips([[seed, index] for index in range(count)], size_px, clip_frames, times)


def calibration_clips(count: int, *, run_seed: int, size_px: int = 64, clip_frames: int = 48) -> list[np.ndarray]:
    """Fresh scenes drawn as the library and evaluation draw them, from a run's own calibration stream.

    What a run fits its decision threshold on (``tasks.trainer``): the look of scored clips
    (library frame shapes, drawn at full size then resized), never an evaluation scene.
    """
    return _library_clips([list(stream_seed(run_seed, CALIBRATION_STREAM, k)) for k in range(count)], size_px,
                          clip_frames)


def library_scene(seed: Sequence[int], clip_frames: int) -> tuple[SceneParams, float]:
    """The library scene drawn from ``seed`` and the start (s) of its ``clip_frames``-frame clip, as the held-out sets draw them.

    The one place that draw is made: benches that read a scene's ground truth (bench/error_anatomy.py)
    describe the very frames the clip shows.
    """
    scene = sample_scene(np.random.default_rng(list(seed)))
    span_s = clip_frames / scene.fps
    return scene, float(np.random.default_rng([*seed, 1]).uniform(0.0, max(scene.duration_s - span_s, 0.0)))


def _library_clips(seeds: list[list[int]], size_px: int, clip_frames: int,
                   times: np.ndarray | None = None) -> list[np.ndarray]:
    """One clip per seed: a library scene from ``seed``, ``clip_frames`` frames (or ``times``) from a random start, resized."""
    from speednet.sampling import resize_short_side

    times = np.arange(clip_frames) if times is None else np.asarray(times, dtype=np.float64)
    if times.min() < 0 or times.max() >= clip_frames:
        raise ValueError(f"times must lie in [0, {clip_frames}) frame periods, got {times.min():g} … {times.max():g}")
    clips = []
    for seed in seeds:
        scene, start_s = library_scene(seed, clip_frames)
        frames = np.concatenate(list(render_frames(scene, start_s + times / scene.fps)))
        clips.append(resize_short_side(frames, size_px).numpy())
    return clips
