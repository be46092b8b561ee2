"""What an isolated worker process runs for scoring: decode one range of a video's frames.

The worker keeps its last decoder open, so the chunks of one video do not re-open (and
re-index) the file each time; a new path replaces it.
"""

from __future__ import annotations

import numpy as np

from speednet.media import ContainerInfo, VideoDecoder

_open: dict[tuple, VideoDecoder] = {}


def _decoder(path: str, info: ContainerInfo, short_side_px: int) -> VideoDecoder:
    key = (path, info, short_side_px)
    if key not in _open:
        _open.clear()
        _open[key] = VideoDecoder(path, info, short_side_px)
    return _open[key]


def frame_count(path: str, info: ContainerInfo, short_side_px: int) -> tuple[int, float]:
    """(frames the decoder finds, its fps): the scorer's frame axis."""
    decoder = _decoder(path, info, short_side_px)
    return decoder.frame_count, decoder.fps


def decode_range(path: str, info: ContainerInfo, short_side_px: int, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as (n, H, W, 3) uint8 at ``short_side_px``."""
    return _decoder(path, info, short_side_px).decode(np.arange(start, stop))
