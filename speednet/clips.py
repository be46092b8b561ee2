"""Which source frames make up each stored clip.

A clip is ``clip_frames`` consecutive frames (3T, so training can skip-sample T of them
at rates up to ~2.2). Fast sources are thinned by keeping every n-th frame (speednet.timebase),
so frame spacing stays regular and no frame is ever duplicated.
"""

from __future__ import annotations

import numpy as np


def plan_clips(frame_count: int, clip_frames: int, frame_step: int = 1, stride_frames: int | None = None) -> np.ndarray:
    """Source frame indices of every clip, shape (n_clips, clip_frames); empty if the video is too short.

    ``stride_frames`` (in kept frames) is the distance between clip starts; the default
    ``clip_frames`` tiles the video without overlap.
    """
    if clip_frames < 1 or frame_step < 1:
        raise ValueError(f"clip_frames ({clip_frames}) and frame_step ({frame_step}) must be >= 1")
    stride = stride_frames or clip_frames
    kept = np.arange(0, frame_count, frame_step)
    starts = np.arange(0, len(kept) - clip_frames + 1, stride)
    if len(starts) == 0:
        return np.empty((0, clip_frames), dtype=np.int64)
    return kept[starts[:, None] + np.arange(clip_frames)[None, :]]
