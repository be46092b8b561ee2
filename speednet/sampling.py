"""The method's anti-shortcut sampling: skip-frame speeds, spatial augmentation, same-batch pairs.

SpeedNet's labels come free from how a clip is sampled, so the network will learn any
cheap cue that separates the two samplings instead of motion. Each of the paper's three
defences is one switch of ``AugmentConfig``, so its ablation table can be re-run:

- temporal: rates drawn from U(1.0, 1.2) or U(1.7, 2.2), never a regular stride of
  exactly 1 or 2, so frame regularity and codec cues say nothing. The paper drops frames
  at random; that makes a 2x clip jerky while the scorer's resampling (and real 2x
  footage) is regular, and a network learns the jerk. ``temporal_sampler`` chooses
  random drops ("drops"), regular resampling at the drawn rate ("regular"), or either
  at random per version ("mixed", so jerkiness no longer tells the label). Resampling at a
  rate between 1 and 2 leaves a stutter (steps of 1 and 2 frames) whose strength follows
  the rate, so under "mixed" the stutter still tells the label: a reference model trained
  so called natural physics resampled at 1.56x (steps 1, 2, 1, 2, …) sped up 82% of the
  time, and slow motion so resampled 68% (bench/stutter.py). "decoupled" (drawn scenes
  only) cuts that tie: each version shows physics at a speed p from its label's range through the frame pattern of an
  independent rate r, frame j at time floor(j·r)·p/r (random drops at rate r likewise);
- spatial: a random N×N resize (blur hides compression jitter, scale breaks "big motion
  = fast"), random crop and flip;
- same batch: each clip appears both normal and sped up, so content cannot predict the label.

Pure numpy/torch, no I/O. A clip is (3T, H, W, 3) uint8 RGB, as stored in the shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from speednet.model import SpeedNetConfig, normalize_uint8

NORMAL_RATE = (1.0, 1.2)
SPED_UP_RATE = (1.7, 2.2)
# The paper resizes to N ∈ [64, 336] px for a 224 px input; kept as fractions of the
# input size so a 64 px CPU model sees the same relative scale jitter.
RESIZE_SCALE = (64 / 224, 336 / 224)
TEMPORAL_SAMPLERS = ("drops", "regular", "mixed", "decoupled")
# "decoupled": the frame-pattern rate r, independent of the label; a third of the versions
# are smooth (r = 1, every step equal), as exact-speed footage is.
PATTERN_RATE = (1.0, 2.5)
SMOOTH_SHARE = 1 / 3
# At 3T frames and the fastest rate (2.2) a draw keeps fewer than T frames ~4% of the time
# (T=16); ten failures in a row are ~1e-14, so the regular-stride fallback never becomes a cue.
MAX_REDRAWS = 10


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's three anti-shortcut switches (all on = the method; see its ablation table)."""

    same_batch: bool = True
    temporal_aug: bool = True
    spatial_aug: bool = True
    resize_px: tuple[int, int] | None = None  # N range of the random resize; None: RESIZE_SCALE × input size
    temporal_sampler: str = "drops"  # "drops" (the paper's), "regular" or "mixed" (see the module docstring)
    sped_up_rate: tuple[float, float] = SPED_UP_RATE  # f range of sped-up items (a curriculum starts higher)

    def __post_init__(self):
        if self.temporal_sampler not in TEMPORAL_SAMPLERS:
            raise ValueError(f"temporal_sampler must be one of {TEMPORAL_SAMPLERS}, got {self.temporal_sampler!r}")
        low, high = self.sped_up_rate
        if not NORMAL_RATE[1] < low <= high:
            raise ValueError(f"sped_up_rate must lie above the normal rates {NORMAL_RATE}, got {self.sped_up_rate}")

    def clips_per_batch(self, batch_items: int) -> int:
        """How many clips ``make_batch`` needs for ``batch_items`` items (same-batch: two items per clip)."""
        if self.same_batch and batch_items % 2:
            raise ValueError(f"same-batch training needs an even batch size, got {batch_items}")
        return batch_items // 2 if self.same_batch else batch_items


def skip_sample(n_frames: int, T: int, rng: np.random.Generator, sped_up: bool,
                temporal_aug: bool = True, sampler: str = "drops",
                sped_up_rate: tuple[float, float] = SPED_UP_RATE) -> np.ndarray:
    """Indices (T,) into a clip of ``n_frames`` (normally 3T) frames at a normal or sped-up rate.

    With ``temporal_aug``: draw f ~ U(1.0, 1.2) (normal) or U(1.7, 2.2) (sped up). Sampler
    "drops" (the paper's): drop each frame with probability 1 − 1/f, keep the first T
    survivors; too few survivors: redraw the drops at the same f, after ``MAX_REDRAWS`` take
    a regular stride of f. Sampler "regular": frames floor(u + j·f), u ~ U(0, 1), as the
    scorer resamples a video at speed f. "mixed" (and "decoupled", which stored frames
    cannot give): either, at even odds. Without ``temporal_aug``: exact strides 1 and 2, the
    shortcut-prone sampling of the ablation.
    """
    if not temporal_aug:
        stride = 2 if sped_up else 1
        if (T - 1) * stride >= n_frames:
            raise ValueError(f"a clip of {n_frames} frames is too short for {T} frames at stride {stride}")
        return np.arange(T, dtype=np.int64) * stride
    low, high = sped_up_rate if sped_up else NORMAL_RATE
    f = rng.uniform(low, high)
    if int((T - 1) * f) + 1 >= n_frames:
        raise ValueError(f"a clip of {n_frames} frames is too short for {T} frames at rate {f:.2f}; "
                         f"store clips of 3T = {3 * T} frames")
    if sampler in ("mixed", "decoupled"):
        sampler = "regular" if rng.random() < 0.5 else "drops"
    return _frame_pattern(n_frames, T, f, rng, sampler)


def _frame_pattern(n_frames: int, T: int, f: float, rng: np.random.Generator, sampler: str) -> np.ndarray:
    """T increasing frame indices at rate ``f`` below ``n_frames``: regular floor(u + j·f), or random drops."""
    if sampler == "regular":
        return np.floor(rng.random() + np.arange(T) * f).astype(np.int64)
    for _ in range(MAX_REDRAWS):
        kept = np.flatnonzero(rng.random(n_frames) < 1.0 / f)
        if len(kept) >= T:
            return kept[:T].astype(np.int64)
    return np.floor(np.arange(T) * f).astype(np.int64)


def decoupled_times(T: int, rng: np.random.Generator, sped_up: bool,
                    sped_up_rate: tuple[float, float] = SPED_UP_RATE) -> np.ndarray:
    """Times of T frames, in natural frame periods from the clip's start, for a clip that can be drawn at any time.

    Physics speed p from the label's range (U(1.0, 1.2) or ``sped_up_rate``); the frame
    pattern of an independent rate r: smooth (r = 1) for ``SMOOTH_SHARE`` of the versions,
    else r ~ U(``PATTERN_RATE``), regular or by random drops at even odds. Frame j shows
    time index_j · p / r, so a version moves at p on average and stutters as r makes it.
    """
    low, high = sped_up_rate if sped_up else NORMAL_RATE
    physics = rng.uniform(low, high)
    if rng.random() < SMOOTH_SHARE:
        return np.arange(T) * physics
    rate = rng.uniform(*PATTERN_RATE)
    sampler = "regular" if rng.random() < 0.5 else "drops"
    return _frame_pattern(int(np.ceil(3 * T * rate)), T, rate, rng, sampler) * (physics / rate)


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # Antialiased: the blur of a downscale is part of the paper's augmentation, and without
    # it aliasing would add scale-dependent flicker that correlates with motion.
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def spatial_augment(frames: torch.Tensor | np.ndarray, size: int, rng: np.random.Generator, *,
                    enabled: bool = True, resize_px: tuple[int, int] | None = None) -> torch.Tensor:
    """(T, H, W, 3) frames → (T, size, size, 3), uint8 kept, else float; one random draw per clip.

    Enabled: resize to a random N×N (N from ``resize_px``, default RESIZE_SCALE × size), random
    size×size crop, random horizontal flip. An N below ``size`` cannot be cropped: the clip is
    scaled back up to size×size, keeping the blur of the small N. Disabled: resize the short
    side to ``size`` and take the centre crop (deterministic: the ablation's rows without spatial augmentation).
    """
    frames = torch.as_tensor(frames)
    # (T, 3, H, W) as a channels-last view: all frames in one call, and uint8 stays uint8,
    # for which PyTorch's antialiased resize is several times faster than on floats.
    images = frames.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8:
        images = images.float()
    h, w = images.shape[-2:]
    if enabled:
        low, high = resize_px or (round(size * RESIZE_SCALE[0]), round(size * RESIZE_SCALE[1]))
        n = int(rng.integers(low, high + 1))
        images = _resize(images, n, n)
        if n >= size:
            top, left = (int(v) for v in rng.integers(0, n - size + 1, size=2))
            images = images[..., top:top + size, left:left + size]
        else:
            images = _resize(images, size, size)
        if rng.random() < 0.5:
            images = images.flip(-1)
    else:
        images = _resize(images, *short_side_size(h, w, size))
        rh, rw = images.shape[-2:]
        top, left = (rh - size) // 2, (rw - size) // 2
        images = images[..., top:top + size, left:left + size]
    return images.permute(0, 2, 3, 1).contiguous()


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the short side at ``size``, aspect kept (rounded; never below ``size``)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_short_side(frames: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) frames → the whole picture with its short side at ``size``, aspect kept, uint8 kept.

    What the scorer feeds the fully convolutional model, and so what evaluation uses.
    """
    images = torch.as_tensor(frames).permute(0, 3, 1, 2)
    if images.dtype != torch.uint8:
        images = images.float()
    return _resize(images, *short_side_size(*images.shape[-2:], size)).permute(0, 2, 3, 1).contiguous()


def take_frames(clip, index_sets: list[np.ndarray]) -> list[torch.Tensor]:
    """Frames of each index set of one clip, as tensors (copies, so read-only shard buffers are fine).

    A clip is an array or tensor of frames, or an object whose ``take(index_sets)`` returns
    them (a procedural scene draws only the frames asked for, each once, at any time:
    its index sets may be fractional).
    """
    if isinstance(clip, torch.Tensor):
        return [clip[torch.from_numpy(indices)] for indices in index_sets]
    if isinstance(clip, np.ndarray):
        return [torch.from_numpy(clip[indices]) for indices in index_sets]
    return [torch.as_tensor(frames) for frames in clip.take(index_sets)]


def _drawable(clip) -> bool:
    """Whether a clip can be drawn at any time (a procedural scene), not only at its stored frames."""
    return not isinstance(clip, (np.ndarray, torch.Tensor)) and hasattr(clip, "take")


def make_batch(clips: list, config: SpeedNetConfig, rng: np.random.Generator,
               augment: AugmentConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch from clips of ≥3T frames: (x (N, 3, T, S, S) float in [-1, 1], labels (N,), 1 = sped up).

    Same batch (default): N = 2·len(clips); item i is clip i at normal speed and item
    i + len(clips) the same clip sped up (independent temporal and spatial draws).
    Otherwise: N = len(clips), each clip once, labels a random half/half split, so the
    class balance matches same-batch runs and the ablation changes one thing only;
    pass ``augment.clips_per_batch(N)`` clips to keep the batch size.
    """
    augment = augment or AugmentConfig()
    if not clips:
        raise ValueError("make_batch needs at least one clip")
    if augment.same_batch:
        labels = np.repeat([False, True], len(clips))
        sources = list(clips) * 2
    else:
        labels = (rng.permutation(len(clips)) + rng.integers(2)) % 2 == 1
        sources = list(clips)
    indices = [decoupled_times(config.clip_frames, rng, bool(sped_up), augment.sped_up_rate)
               if augment.temporal_sampler == "decoupled" and augment.temporal_aug and _drawable(clip) else
               skip_sample(len(clip), config.clip_frames, rng, bool(sped_up), augment.temporal_aug,
                           augment.temporal_sampler, augment.sped_up_rate) for clip, sped_up in zip(sources, labels)]
    frames: list[torch.Tensor | None] = [None] * len(sources)
    by_clip: dict[int, list[int]] = {}
    for item, clip in enumerate(sources):  # one take per clip: both versions of a pair at once
        by_clip.setdefault(id(clip), []).append(item)
    for items in by_clip.values():
        for item, taken in zip(items, take_frames(sources[items[0]], [indices[i] for i in items])):
            frames[item] = taken
    items = [spatial_augment(f, config.input_size, rng, enabled=augment.spatial_aug, resize_px=augment.resize_px)
             for f in frames]
    return normalize_uint8(torch.stack(items)), torch.as_tensor(labels, dtype=torch.float32)
