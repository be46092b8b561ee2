"""Natural speed is a property of time, not of frames: how a source's frames become the model's.

The model learnt "natural" from footage at 24–30 fps: motion per frame means motion per
1/24–1/30 s. A 60 fps source shows half that motion per frame, and its every frame would
look like slow motion; a 10 fps source shows 2.5–3× it, and would look sped up. So every
flow (ingest, training clips, scoring, embedding) looks at a video through its *time
base*: sources above ``MODEL_FPS`` keep every n-th frame (never duplicating one), sources
below it get ``m − 1`` motion-compensated frames between each pair (ffmpeg's
``minterpolate``), n or m chosen to bring the rate closest to 27 fps, so that a speed s
means s × real time for any source. Scores are computed on the model's frames and mapped
back to source frames by time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from speednet.ffmpeg import interpolate_frames

# Frame rates whose motion per frame the model judges as trained (procedural scenes: 24–30 fps),
# and the rate a source outside them is brought closest to.
MODEL_FPS = (20.0, 30.0)
REFERENCE_FPS = 27.0


@dataclass(frozen=True)
class TimeBase:
    """A source's frames as the model sees them: every ``step``-th source frame, ``upsample`` model frames per kept one."""

    source_fps: float
    step: int = 1
    upsample: int = 1

    @classmethod
    def for_fps(cls, fps: float) -> "TimeBase":
        """The time base of a ``fps`` source: as it is within ``MODEL_FPS``, else the integer thinning
        (fast sources) or interpolation factor (slow ones) that brings it closest to ``REFERENCE_FPS``."""
        if not fps > 0 or MODEL_FPS[0] <= fps <= MODEL_FPS[1]:
            return cls(fps)
        ratio = fps / REFERENCE_FPS if fps > MODEL_FPS[1] else REFERENCE_FPS / fps
        factor = min({max(1, math.floor(ratio)), math.ceil(ratio)}, key=lambda n: abs(math.log(ratio / n)))
        return cls(fps, step=factor) if fps > MODEL_FPS[1] else cls(fps, upsample=factor)

    @property
    def is_source_rate(self) -> bool:
        """True when the model reads the source's own frames (20–30 fps): nothing to map back."""
        return self.step == 1 and self.upsample == 1

    @property
    def model_fps(self) -> float:
        """Frames per second of real time the model sees."""
        return self.source_fps / self.step * self.upsample

    def model_frames(self, source_frames: int) -> int:
        """How many model frames a video of ``source_frames`` frames gives."""
        kept = math.ceil(source_frames / self.step)
        return (kept - 1) * self.upsample + 1 if kept else 0

    def source_position(self, model_frame: np.ndarray | float) -> np.ndarray:
        """Source frame position (fractional between interpolated frames) of model frames."""
        return np.asarray(model_frame, dtype=np.float64) / self.upsample * self.step

    def reader(self, read_source: Callable[[int, int], np.ndarray]) -> Callable[[int, int], np.ndarray]:
        """``read(start, stop)`` of model frames, from ``read_source(start, stop)`` of source frames."""
        if self.is_source_rate:
            return read_source
        if self.upsample == 1:
            def thinned(start: int, stop: int) -> np.ndarray:
                return read_source(start * self.step, (stop - 1) * self.step + 1)[::self.step]

            return thinned

        def interpolated(start: int, stop: int) -> np.ndarray:
            first, last = start // self.upsample, -(-(stop - 1) // self.upsample)  # source frames around the range
            frames = interpolate_frames(read_source(first, last + 1), self.upsample)
            offset = start - first * self.upsample
            return frames[offset:offset + stop - start]

        return interpolated

    def to_source(self, values: np.ndarray, source_frames: int) -> np.ndarray:
        """Per-model-frame ``values`` (…, model_frames) → per source frame, linear in time."""
        values = np.asarray(values)
        if self.step == 1 and self.upsample == 1:
            return values
        at = self.source_position(np.arange(values.shape[-1]))
        flat = values.reshape(-1, values.shape[-1])
        out = np.stack([np.interp(np.arange(source_frames), at, row) for row in flat])
        return out.reshape(*values.shape[:-1], source_frames).astype(values.dtype)
