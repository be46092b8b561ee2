"""Parquet shards: exact round trips, atomic writes, and packing by size."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage.shards import ShardPacker, ShardWriter, iter_clips


def _frames(seed: int, n: int = 6, h: int = 24, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.integers(-3, 4, (n, h, w, 3)), axis=1), axis=2)  # JPEG-friendly texture
    return (smooth - smooth.min()).astype(np.uint8)


def test_raw_frames_round_trip_exactly(tmp_path):
    frames = _frames(0)
    with ShardWriter(tmp_path / "s.parquet") as writer:
        writer.write_clip("v1", 0, np.arange(10, 16), 25.0, 25.0, frames)
        writer.write_clip("v1", 1, np.arange(16, 22), 25.0, 25.0, frames[::-1])
    clips = list(iter_clips(tmp_path / "s.parquet"))
    assert [c.clip_index for c in clips] == [0, 1]
    np.testing.assert_array_equal(clips[0].frames, frames)
    np.testing.assert_array_equal(clips[1].frames, frames[::-1])
    np.testing.assert_allclose(clips[0].t_seconds, np.arange(10, 16) / 25.0)


def test_jpeg_frames_round_trip_closely(tmp_path, media):
    from speednet.media import VideoDecoder, probe_container

    frames = VideoDecoder(media["landscape"], probe_container(media["landscape"])).decode(range(6))
    with ShardWriter(tmp_path / "s.parquet", encoding="jpeg") as writer:
        writer.write_clip("v1", 0, np.arange(6), 30.0, 30.0, frames)
    (clip,) = iter_clips(tmp_path / "s.parquet")
    assert clip.frames.shape == frames.shape
    mse = np.mean((clip.frames.astype(float) - frames) ** 2)
    assert 10 * np.log10(255**2 / mse) > 24  # PSNR in dB: lossy (testsrc2 is all sharp edges), but the same picture


def test_a_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "s.parquet") as writer:
            writer.write_clip("v1", 0, np.arange(6), 25.0, 25.0, _frames(2))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_packing_groups_whole_videos_by_target_size(tmp_path):
    parts = []
    for i in range(5):
        part = tmp_path / f"part{i}.parquet"
        with ShardWriter(part, compression="none") as writer:
            for c in range(3):
                writer.write_clip(f"v{i}", c, np.arange(6), 25.0, 25.0, _frames(10 * i + c))
        parts.append((f"v{i}", part))
    part_bytes = parts[0][1].stat().st_size
    shards = _pack(parts, tmp_path / "out", target_bytes=int(2.5 * part_bytes))
    assert [s.video_ids for s in shards] == [("v0", "v1"), ("v2", "v3"), ("v4",)]
    assert sum(s.clip_count for s in shards) == 15
    for shard in shards:
        assert pq.ParquetFile(shard.path).metadata.row_group(0).column(8).compression == "ZSTD"
        stored = {c.video_id for c in iter_clips(shard.path)}
        assert stored == set(shard.video_ids)
    again = _pack(parts, tmp_path / "out", target_bytes=int(2.5 * part_bytes))
    assert [s.path for s in again] == [s.path for s in shards]  # same parts, same names: no duplicates


def _pack(parts, out_dir, target_bytes):
    with ShardPacker(out_dir, name_prefix="shard", target_bytes=target_bytes) as packer:
        for video_id, part in parts:
            packer.add(video_id, part)
    return packer.shards


def test_a_failed_pack_leaves_no_shard_behind(tmp_path):
    part = tmp_path / "part.parquet"
    with ShardWriter(part, compression="none") as writer:
        writer.write_clip("v0", 0, np.arange(6), 25.0, 25.0, _frames(1))
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        with ShardPacker(out, name_prefix="shard", target_bytes=1 << 20) as packer:
            packer.add("v0", part)
            packer.add("v1", tmp_path / "missing.parquet")
    assert list(out.iterdir()) == []

