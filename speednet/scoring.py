"""Per-frame speediness of a whole video (the paper's "Per-frame speediness").

A video is judged at speeds X^i (X = 1.25, i = 0..k): the version at speed s takes source
frame floor(j·s) as its frame j, so versions are frame-index resamplings of one decode.
A T-frame window slides over every version; its P(natural) goes to the source time of
its centre and is interpolated back to every source frame, giving P_i(t). The
speediness V(t) is the largest speed up to which every speed is judged natural
(P_i(t) > ρ for all X^i ≤ V), and 0 where even 1x looks unnatural (footage that is already
sped up). *Chosen* over the paper's max_i X^i·[P_i(t) > ρ]: played faster, footage cannot
look more natural, so a "natural" above an unnatural speed is a wrong answer (a still
stretch, a window straddling a cut), and the max let one such answer at any of ten speeds
lift V(t). On the sample library it turned 2x stretches into "natural": recomputed from one
demo catalog's stored scores, 0.79 of 2x frames were labelled sped up under the max, 0.90
under this rule (docs/BENCHMARKS.md, segment validity).

Frames arrive through a ``read(start, stop)`` callback in chunks and leave the buffer
once no pending window needs them, so memory is bounded by the chunk plus the longest
window span (about (T−1)·X^k frames), whatever the video's length.

Modes:
- ``sliding``: each window runs through the network on its own (exact, the reference);
- ``dense``: the fully convolutional backbone runs once over long stretches of each
  version and windows are pooled in feature space (max over space, mean over the
  window's time cells); the stride is rounded to a multiple of the backbone's temporal
  stride (4 frames for the CPU preset) and only thins the windows kept: the pass costs
  the same at any stride;
- ``budget`` (sliding only): SCSampler-style savings at speeds above 1x: a window is run
  only where the next lower speed still looked natural around its centre, and windows
  with almost no motion are not run either (a static shot looks natural at any speed).
  A window not run inherits the lower speed's P(natural); V(t) stops at the first
  unnatural speed anyway, so it is what full scoring gives, apart from interpolation
  between window centres and the static windows it skips.

Windows run in groups, one per ``chunk_frames`` of source (by the last frame they need),
lowest speed first within a group, so budget mode sees the lower speed's answers while
batches stay full.

No I/O and no Prefect: the decode callback and the model are passed in.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from scipy import ndimage

from speednet.model import SpeedNet, normalize_uint8

SPEED_BASE = 1.25
SEGMENT_KINDS = ("sped_up", "natural", "slow_motion")
# V(t) from which a frame counts as slow motion: still natural when played about twice as fast.
# The speeds are a grid (1.25^i: …, 1.56, 1.95, 2.44): at 1.95x slow motion (0.5x) shows
# physics at 0.98x and natural footage at 1.95x, the cleanest split; demanding 2.44x would ask
# the model to call 1.22x physics natural, past the 1.0–1.2 it learns as natural.
SLOW_MOTION_SPEEDINESS = 1.9
# Mean absolute frame difference (0–255 grey levels) below which a window counts as static.
STATIC_MOTION = 0.5


@dataclass(frozen=True)
class ScoreConfig:
    """How a video is scored; stored as JSON beside every score row."""

    levels: int = 10  # k: speeds X^0 … X^k (k = 10 reaches 9.3x)
    base: float = SPEED_BASE  # X
    stride: int = 4  # window stride, in frames of each speed version
    rho: float = 0.5  # ρ: P(natural) above which a speed counts as natural
    mode: str = "sliding"  # "sliding" (exact) or "dense" (pooled in feature space)
    budget: bool = False  # skip high speeds where the lower one already looked unnatural
    batch_size: int = 32  # windows per forward pass
    chunk_frames: int = 512  # source frames decoded per read
    dense_frames: int = 128  # version frames per dense forward pass

    def __post_init__(self) -> None:
        if self.levels < 0 or self.base <= 1.0:
            raise ValueError(f"need levels >= 0 and base > 1, got levels={self.levels}, base={self.base}")
        if self.stride < 1 or self.batch_size < 1 or self.chunk_frames < 1:
            raise ValueError("stride, batch_size and chunk_frames must be >= 1")
        if not 0.0 < self.rho < 1.0:
            raise ValueError(f"rho must be in (0, 1), got {self.rho}")
        if self.mode not in ("sliding", "dense"):
            raise ValueError(f"mode must be 'sliding' or 'dense', got {self.mode!r}")
        if self.budget and self.mode == "dense":
            raise ValueError("budget mode skips single windows, so it works with mode='sliding' only")

    @property
    def speeds(self) -> np.ndarray:
        """The speeds X^i, i = 0..k."""
        return self.base ** np.arange(self.levels + 1, dtype=np.float64)


def version_frames(n_frames: int, speed: float) -> int:
    """How many frames the version at ``speed`` has: every j with floor(j·speed) < n_frames."""
    return int(np.ceil(n_frames / speed - 1e-9))


def version_indices(start: int, count: int, speed: float) -> np.ndarray:
    """Source frame indices of version frames start … start+count−1 at ``speed``."""
    return np.floor((start + np.arange(count)) * speed + 1e-9).astype(np.int64)


@dataclass(frozen=True)
class Job:
    """One forward unit: ``length`` frames of version ``level`` from version frame ``start``."""

    level: int
    start: int
    length: int
    first: int  # first and last source frame it reads
    last: int


def plan_jobs(n_frames: int, clip_frames: int, config: ScoreConfig, temporal_stride: int = 1) -> list[Job]:
    """Every window (sliding) or stretch (dense) to run: grouped by the chunk of their last source frame, lowest speed first."""
    jobs = []
    T = clip_frames
    for level, speed in enumerate(config.speeds):
        n = version_frames(n_frames, speed)
        if n < T:
            continue
        if config.mode == "sliding":
            starts = np.arange(0, n - T + 1, config.stride)
            lengths = np.full(len(starts), T)
        else:
            length = max(T, config.dense_frames // temporal_stride * temporal_stride)
            step = length - T + temporal_stride  # consecutive stretches overlap so every window fits in one
            starts = np.arange(0, max(n - T, 0) + 1, step)
            lengths = np.minimum(length, n - starts)
        for start, length in zip(starts.tolist(), lengths.tolist()):
            idx = version_indices(start, length, speed)
            jobs.append(Job(level, start, length, int(idx[0]), int(idx[-1])))
    jobs.sort(key=lambda j: (j.last // config.chunk_frames, j.level, j.last, j.start))
    return jobs


def window_centre(start: int, clip_frames: int, speed: float) -> float:
    """Source-frame time of a window's centre: the middle of the source frames it spans."""
    idx = version_indices(start, clip_frames, speed)
    return (idx[0] + idx[-1]) / 2.0


@dataclass
class FrameBuffer:
    """Decoded source frames [lo, lo + len(frames)), extended by chunks, trimmed from the front."""

    read: Callable[[int, int], np.ndarray]
    n_frames: int
    chunk: int
    lo: int = 0
    frames: np.ndarray | None = None

    @property
    def hi(self) -> int:
        return self.lo + (0 if self.frames is None else len(self.frames))

    def ensure(self, last: int) -> None:
        """Decode on until frame ``last`` is held."""
        while self.hi <= last:
            stop = min(self.n_frames, self.hi + self.chunk)
            new = self.read(self.hi, stop)
            if len(new) != stop - self.hi:
                raise RuntimeError(f"decoder returned {len(new)} frames for {self.hi}..{stop - 1}")
            self.frames = new if self.frames is None else np.concatenate([self.frames, new])

    def trim(self, first_needed: int) -> None:
        """Drop the frames before ``first_needed``."""
        if self.frames is not None and first_needed > self.lo:
            drop = min(first_needed - self.lo, len(self.frames))
            self.frames, self.lo = self.frames[drop:], self.lo + drop

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Held frames at source ``indices``."""
        return self.frames[indices - self.lo]


@dataclass
class Scores:
    """P_i(t) for every source frame, and what it cost."""

    speeds: np.ndarray  # (L,) the speeds that had at least one window
    p_natural: np.ndarray  # (L, n_frames) float32
    windows_run: int = 0  # windows the network judged
    windows_skipped: int = 0  # windows the budget mode answered without the network
    peak_buffer_frames: int = 0  # most decoded frames held at once (bounded, whatever the length)
    window_p: list = field(default_factory=list)  # per level: (centres, p) of every window

    def speediness(self, rho: float) -> np.ndarray:
        """V(t): the largest speed up to which every speed is judged natural (P > ρ), 0 where 1x is not."""
        return speediness(self.p_natural, self.speeds, rho)


def speediness(p_natural: np.ndarray, speeds: np.ndarray, rho: float) -> np.ndarray:
    """V(t): the largest speed X^i with P_j(t) > ρ at every speed j ≤ i (rows of ``p_natural``, ascending ``speeds``).

    0 where 1x already looks unnatural. A natural answer above the first unnatural speed does
    not count (see the module docstring for why this departs from the paper's max).
    """
    speeds = np.asarray(speeds, dtype=np.float64)
    if not len(speeds):
        return np.zeros(0)
    natural_so_far = np.cumprod(np.asarray(p_natural) > rho, axis=0).astype(bool)
    return np.max(np.where(natural_so_far, speeds[:, None], 0.0), axis=0)


class _Judge:
    """Runs the network on windows or stretches and turns logits into P(natural) per window."""

    def __init__(self, model: SpeedNet, config: ScoreConfig):
        self.model, self.config = model, config
        self.device = next(model.parameters()).device
        self.T = model.config.clip_frames
        self.ts = temporal_stride(model)

    @torch.no_grad()
    def _logit_maps(self, clips: list[np.ndarray]) -> torch.Tensor:
        x = normalize_uint8(np.stack(clips)).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model.logit_map(x).float()

    def windows(self, clips: list[np.ndarray]) -> np.ndarray:
        """P(natural) of T-frame windows, the paper's pooling (max over space, mean over time)."""
        logits = self._logit_maps(clips).amax(dim=(2, 3)).mean(dim=1)
        return torch.sigmoid(-logits).cpu().numpy()

    def stretch(self, frames: np.ndarray) -> np.ndarray:
        """P(natural) of every window (one per time cell) inside one long stretch, pooled in feature space."""
        cells = self._logit_maps([frames])[0].amax(dim=(1, 2))  # (T',) max over space per time cell
        per_window = self.T // self.ts
        n_windows = (len(frames) - self.T) // self.ts + 1
        sums = torch.cumsum(torch.cat([cells.new_zeros(1), cells]), 0)
        pooled = (sums[per_window:per_window + n_windows] - sums[:n_windows]) / per_window
        return torch.sigmoid(-pooled).cpu().numpy()


def temporal_stride(model: SpeedNet) -> int:
    """Version frames per time cell of the backbone's output (4 for the CPU preset, 8 at full size)."""
    return model.config.stem_temporal_stride * 4


def _motion(clip: np.ndarray) -> float:
    """Cheap saliency: mean absolute difference of successive frames, in grey levels."""
    grey = clip[:, ::2, ::2].mean(axis=-1, dtype=np.float32)
    return float(np.abs(np.diff(grey, axis=0)).mean()) if len(grey) > 1 else 0.0


def score_frames(model: SpeedNet, read: Callable[[int, int], np.ndarray], n_frames: int, config: ScoreConfig,
                 on_progress: Callable[[int, int], None] | None = None) -> Scores:
    """P_i(t) of every source frame at every speed, reading frames once in bounded chunks.

    ``read(start, stop)`` returns source frames [start, stop) as (n, H, W, 3) uint8 at the
    scoring resolution. ``on_progress(done, total)`` is called as windows complete.
    """
    T = model.config.clip_frames
    if n_frames < T:
        raise ValueError(f"a video of {n_frames} frames is shorter than one {T}-frame window")
    judge = _Judge(model, config)
    dense_stride = max(judge.ts, round(config.stride / judge.ts) * judge.ts)
    jobs = plan_jobs(n_frames, T, config, judge.ts)
    first_needed = np.minimum.accumulate([j.first for j in jobs][::-1])[::-1]  # min first over jobs[i:]
    buffer = FrameBuffer(read, n_frames, config.chunk_frames)
    speeds = config.speeds
    results: list[list[tuple[float, float]]] = [[] for _ in speeds]  # per level: (centre, P), sorted by centre
    queue: list[tuple[Job, np.ndarray]] = []
    run = skipped = peak = 0

    def record(level: int, centre: float, p: float) -> None:
        bisect.insort(results[level], (centre, p))

    def flush() -> None:
        nonlocal run
        if queue:
            for (job, _), p in zip(queue, judge.windows([clip for _, clip in queue])):
                record(job.level, window_centre(job.start, T, speeds[job.level]), float(p))
            run += len(queue)
            queue.clear()

    def lower_p(level: int, centre: float) -> float | None:
        """P(natural) of the judged window one speed lower whose centre is nearest ``centre``."""
        below = results[level - 1]
        if not below:
            return None
        k = bisect.bisect_left(below, centre, key=lambda r: r[0])
        nearest = min((i for i in (k - 1, k) if 0 <= i < len(below)), key=lambda i: abs(below[i][0] - centre))
        return below[nearest][1]

    total = len(jobs)
    group = level = None
    for i, job in enumerate(jobs):
        if config.budget and (job.last // config.chunk_frames != group or job.level != level):
            flush()  # the lower speed's answers exist before the next speed asks for them
            group, level = job.last // config.chunk_frames, job.level
        buffer.trim(int(first_needed[i]))
        buffer.ensure(job.last)
        peak = max(peak, buffer.hi - buffer.lo)
        frames = buffer.take(version_indices(job.start, job.length, speeds[job.level]))
        if config.mode == "dense":
            p = judge.stretch(frames)
            starts = job.start + judge.ts * np.arange(len(p))
            for start, q in zip(starts, p):
                if start % dense_stride == 0:
                    record(job.level, window_centre(int(start), T, speeds[job.level]), float(q))
                    run += 1
        elif config.budget and job.level > 0:
            centre = window_centre(job.start, T, speeds[job.level])
            below = lower_p(job.level, centre)
            if below is not None and (below <= config.rho or _motion(frames) < STATIC_MOTION):
                record(job.level, centre, below)  # inherited, not judged
                skipped += 1
            else:
                queue.append((job, frames))
        else:
            queue.append((job, frames))
        if len(queue) >= config.batch_size:
            flush()
        if on_progress and (i + 1) % 64 == 0:
            on_progress(i + 1, total)
    flush()
    if on_progress:
        on_progress(total, total)

    kept = [level for level in range(len(speeds)) if results[level]]
    frame_axis = np.arange(n_frames, dtype=np.float64)
    curves, window_p = [], []
    for level in kept:
        at, p = (np.array(column) for column in zip(*results[level]))
        curves.append(np.interp(frame_axis, at, p).astype(np.float32))
        window_p.append((at, p))
    return Scores(speeds=speeds[kept], p_natural=np.stack(curves), windows_run=run, windows_skipped=skipped,
                  peak_buffer_frames=peak, window_p=window_p)


def frame_kinds(v: np.ndarray, fps: float, smooth_s: float = 0.5) -> np.ndarray:
    """Per-frame kind code (index into SEGMENT_KINDS) from V(t), median-smoothed over ``smooth_s``.

    slow_motion: V ≥ ``SLOW_MOTION_SPEEDINESS`` (still natural when played about twice as fast);
    sped_up: V < 1 (unnatural even at 1x); natural otherwise.
    """
    size = max(1, int(round(smooth_s * fps)) | 1)
    smooth = ndimage.median_filter(np.asarray(v, dtype=np.float64), size=size, mode="nearest")
    return np.where(smooth >= SLOW_MOTION_SPEEDINESS, 2, np.where(smooth < 1.0, 0, 1)).astype(np.int8)


def segments(v: np.ndarray, p_natural_1x: np.ndarray, fps: float, smooth_s: float = 0.5) -> Iterator[dict]:
    """Runs of one kind: start_s, end_s (exclusive), kind, mean speediness and mean P(natural) at 1x."""
    kinds = frame_kinds(v, fps, smooth_s)
    if not len(kinds):
        return
    edges = np.flatnonzero(np.diff(kinds)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(kinds)]
    for start, end in zip(starts, ends):
        yield {"start_s": start / fps, "end_s": end / fps, "kind": SEGMENT_KINDS[kinds[start]],
               "mean_speediness": float(np.mean(v[start:end])), "mean_p_natural": float(np.mean(p_natural_1x[start:end]))}


def summary(v: np.ndarray, fps: float) -> dict:
    """Per-video statistics of V(t) for the ``video_speediness`` table."""
    v = np.asarray(v, dtype=np.float64)
    return {"frames": int(len(v)), "duration_s": len(v) / fps, "mean_speediness": float(v.mean()),
            "median_speediness": float(np.median(v)), "p10_speediness": float(np.percentile(v, 10)),
            "p90_speediness": float(np.percentile(v, 90)), "max_speediness": float(v.max()),
            "frac_slow_motion": float(np.mean(v >= SLOW_MOTION_SPEEDINESS)), "frac_sped_up": float(np.mean(v < 1.0))}
