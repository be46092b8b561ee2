"""The job an isolated worker process runs for one video: decode it into a staging part.

Runs in a spawned process (speednet.isolation), so it imports no Prefect and returns
only a small summary; the frames go straight to disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speednet.clips import plan_clips
from speednet.errors import TooShort
from speednet.media import ContainerInfo, VideoDecoder, frame_step_for
from storage.shards import ShardWriter

_CHUNK_FRAMES = 256  # bounded memory per decode call (decord's get_batch grows with batch size)


def decode_to_part(path: str, video_id: str, info: ContainerInfo, params: dict, part_path: str) -> dict:
    """Decode ``path`` into clips at ``part_path`` (uncompressed Parquet); return its catalog fields."""
    decoder = VideoDecoder(path, info, params["short_side_px"])
    step = frame_step_for(decoder.fps, params["max_fps"])
    clips = plan_clips(decoder.frame_count, params["clip_frames"], step, params["clip_stride_frames"])
    if len(clips) == 0:
        raise TooShort(path, f"{decoder.frame_count} frames at step {step}; one clip needs {params['clip_frames']}")
    clips_per_chunk = max(1, _CHUNK_FRAMES // params["clip_frames"])
    with ShardWriter(Path(part_path), encoding=params["frame_encoding"], compression="none") as part:
        for first in range(0, len(clips), clips_per_chunk):
            chunk = clips[first:first + clips_per_chunk]
            needed, where = np.unique(chunk, return_inverse=True)
            frames = decoder.decode(needed)[where.reshape(chunk.shape)]
            for offset, (indices, clip_frames) in enumerate(zip(chunk, frames)):
                part.write_clip(video_id, first + offset, indices, decoder.fps, decoder.fps / step, clip_frames)
    return {
        **decoder.probe(video_id).as_row(),
        "clip_count": len(clips),
        "clip_fps": decoder.fps / step,
        "part_path": part_path,
    }
