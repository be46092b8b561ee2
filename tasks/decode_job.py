"""The job an isolated worker process runs for one video: decode it into a staging part.

Runs in a spawned process (speednet.isolation), so it imports no Prefect and returns
only a small summary; the frames go straight to disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speednet.clips import plan_clips
from speednet.errors import TooShort
from speednet.media import ContainerInfo, VideoDecoder
from speednet.timebase import TimeBase
from storage.shards import ShardWriter

_CHUNK_FRAMES = 256  # bounded memory per decode call (decord's get_batch grows with batch size)


def decode_to_part(path: str, video_id: str, info: ContainerInfo, params: dict, part_path: str) -> dict:
    """Decode ``path`` into clips at ``part_path`` (uncompressed Parquet); return its catalog fields."""
    decoder = VideoDecoder(path, info, params["short_side_px"])
    # Stored clips are in the model's time base: a fast source thinned, a slow one interpolated (speednet.timebase).
    timebase = TimeBase.for_fps(decoder.fps)
    if timebase.upsample > 1:
        count = _write_interpolated_clips(decoder, video_id, timebase, params, part_path)
    else:
        count = _write_clips(decoder, video_id, timebase.step, params, part_path)
    return {
        **decoder.probe(video_id).as_row(),
        "clip_count": count,
        "clip_fps": timebase.model_fps,
        "part_path": part_path,
    }


def _write_clips(decoder: VideoDecoder, video_id: str, step: int, params: dict, part_path: str) -> int:
    """Clips of every ``step``-th source frame, decoded in bounded chunks; returns how many."""
    clips = plan_clips(decoder.frame_count, params["clip_frames"], step, params["clip_stride_frames"])
    if len(clips) == 0:
        raise TooShort(decoder.path, f"{decoder.frame_count} frames at step {step}; one clip needs {params['clip_frames']}")
    clips_per_chunk = max(1, _CHUNK_FRAMES // params["clip_frames"])
    with ShardWriter(Path(part_path), encoding=params["frame_encoding"], compression="none") as part:
        for first in range(0, len(clips), clips_per_chunk):
            chunk = clips[first:first + clips_per_chunk]
            needed, where = np.unique(chunk, return_inverse=True)
            frames = decoder.decode(needed)[where.reshape(chunk.shape)]
            for offset, (indices, clip_frames) in enumerate(zip(chunk, frames)):
                part.write_clip(video_id, first + offset, indices, decoder.fps, decoder.fps / step, clip_frames)
    return len(clips)


def _write_interpolated_clips(decoder: VideoDecoder, video_id: str, timebase: TimeBase, params: dict,
                              part_path: str) -> int:
    """Clips of a slow source at ``timebase.model_fps`` (motion-compensated frames between source frames)."""
    length = params["clip_frames"]
    model_frames = timebase.model_frames(decoder.frame_count)
    starts = range(0, model_frames - length + 1, params["clip_stride_frames"] or length)
    if not starts:
        raise TooShort(decoder.path, f"{decoder.frame_count} frames at {decoder.fps:g} fps give {model_frames} frames at "
                                     f"{timebase.model_fps:g} fps; one clip needs {length}")
    read = timebase.reader(lambda start, stop: decoder.decode(np.arange(start, stop)))
    with ShardWriter(Path(part_path), encoding=params["frame_encoding"], compression="none") as part:
        for number, start in enumerate(starts):
            indices = np.floor(timebase.source_position(np.arange(start, start + length))).astype(np.int64)
            part.write_clip(video_id, number, indices, decoder.fps, timebase.model_fps, read(start, start + length))
    return len(starts)
