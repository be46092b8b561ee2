"""Parquet shards of clips: the on-disk form of decoded training/scoring frames.

One row per clip (see docs/SHARDS.md for the schema). Frames are stored per frame, as
raw uint8 RGB (``raw``; the Parquet column is zstd-compressed) or as JPEG (``jpeg``), so a
reader can decode exactly the frames it needs. Files appear under their final name only
when complete (temp + rename). A reader that holds shards across a long run (training)
takes a shared lock on them (``reading``), and shards are only deleted when no one holds
them (``delete_unless_read``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import partial_path

SHARD_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("frame_indices", pa.list_(pa.int32()), nullable=False),  # source frame numbers
        pa.field("t_seconds", pa.list_(pa.float64()), nullable=False),  # source timestamps of those frames
        pa.field("fps", pa.float32(), nullable=False),  # rate of the stored frames (source fps / frame step)
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("encoding", pa.string(), nullable=False),  # "raw" (H*W*3 uint8 bytes) or "jpeg"
        pa.field("frames", pa.list_(pa.binary()), nullable=False),  # one blob per frame
    ],
    metadata={"speednet.shard_version": "1"},
)
FRAME_ENCODINGS = ("raw", "jpeg")
DEFAULT_ROW_GROUP_BYTES = 64 << 20


@dataclass
class Clip:
    """Consecutive frames of one video, as stored in a shard row."""

    video_id: str
    clip_index: int
    frame_indices: np.ndarray  # (N,) int
    t_seconds: np.ndarray  # (N,) float
    fps: float
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB


def encode_frames(frames: np.ndarray, encoding: str, jpeg_quality: int = 90) -> list[bytes]:
    """One blob per frame of an (N, H, W, 3) uint8 array."""
    if encoding == "raw":
        return [np.ascontiguousarray(frame).tobytes() for frame in frames]
    if encoding == "jpeg":
        import simplejpeg  # libjpeg-turbo without PIL's per-image overhead: several times faster here

        return [simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=jpeg_quality, colorspace="RGB",
                                       colorsubsampling="420") for frame in frames]
    raise ValueError(f"unknown frame encoding {encoding!r}; choose one of {FRAME_ENCODINGS}")


def decode_frames(blobs: Iterable[bytes], encoding: str, height: int, width: int) -> np.ndarray:
    """Inverse of ``encode_frames``: an (N, H, W, 3) uint8 array."""
    if encoding == "raw":
        return np.stack([np.frombuffer(b, dtype=np.uint8).reshape(height, width, 3) for b in blobs])
    if encoding == "jpeg":
        import simplejpeg

        return np.stack([simplejpeg.decode_jpeg(b, colorspace="RGB") for b in blobs])
    raise ValueError(f"unknown frame encoding {encoding!r}; choose one of {FRAME_ENCODINGS}")


class ShardWriter:
    """Append clips to a Parquet file, written atomically.

    ``compression`` applies per column ('zstd' for shards, 'none' for fast staging parts);
    rows are flushed as row groups of about ``row_group_bytes``.
    """

    def __init__(self, path: str | Path, *, encoding: str = "raw", compression: str = "zstd",
                 compression_level: int | None = 1, row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES):
        if encoding not in FRAME_ENCODINGS:
            raise ValueError(f"unknown frame encoding {encoding!r}; choose one of {FRAME_ENCODINGS}")
        self.path = Path(path)
        self.encoding = encoding
        self.row_group_bytes = row_group_bytes
        self._tmp = partial_path(self.path)
        self._compression = compression
        self._compression_level = compression_level if compression == "zstd" else None
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict] = []
        self._buffered_bytes = 0
        self.clip_count = 0

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(
            self._tmp, SHARD_SCHEMA, compression=self._compression, compression_level=self._compression_level,
            use_dictionary=["video_id", "encoding"], write_statistics=["video_id", "clip_index"],
        )
        return self

    def write_clip(self, video_id: str, clip_index: int, frame_indices: np.ndarray, fps_source: float,
                   fps_stored: float, frames: np.ndarray) -> None:
        """Add one clip; ``frames`` (N, H, W, 3) uint8 are encoded with the writer's encoding."""
        blobs = encode_frames(frames, self.encoding)
        self._rows.append(dict(
            video_id=video_id, clip_index=int(clip_index), frame_indices=[int(i) for i in frame_indices],
            t_seconds=[float(i) / fps_source for i in frame_indices], fps=float(fps_stored),
            height=int(frames.shape[1]), width=int(frames.shape[2]), encoding=self.encoding, frames=blobs,
        ))
        self._buffered_bytes += sum(len(b) for b in blobs)
        self.clip_count += 1
        if self._buffered_bytes >= self.row_group_bytes:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        """Append rows already in shard form (used when packing parts into shards)."""
        self._flush()
        assert self._writer is not None, "use ShardWriter as a context manager"
        self._writer.write_table(table.cast(SHARD_SCHEMA))
        self.clip_count += table.num_rows

    def _flush(self) -> None:
        if self._rows:
            assert self._writer is not None, "use ShardWriter as a context manager"
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=SHARD_SCHEMA))
            self._rows, self._buffered_bytes = [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def iter_clips(path: str | Path, video_ids: Iterable[str] | None = None) -> Iterator[Clip]:
    """Clips of a shard, a row group at a time (bounded memory), optionally only some videos."""
    wanted = set(video_ids) if video_ids is not None else None
    from storage import objects

    shard = objects.parquet_file(path)
    for group in range(shard.num_row_groups):
        table = shard.read_row_group(group)
        for row in table.to_pylist():
            if wanted is not None and row["video_id"] not in wanted:
                continue
            yield clip_from_row(row)


def clip_from_row(row: dict) -> Clip:
    """Decode one shard row (as a dict) into a ``Clip``."""
    return Clip(
        video_id=row["video_id"], clip_index=row["clip_index"],
        frame_indices=np.asarray(row["frame_indices"], dtype=np.int64),
        t_seconds=np.asarray(row["t_seconds"], dtype=np.float64), fps=row["fps"],
        frames=decode_frames(row["frames"], row["encoding"], row["height"], row["width"]),
    )


@dataclass(frozen=True)
class PackedShard:
    """A shard written by ``ShardPacker``: where, which videos, how many clips, how big."""

    path: Path | str  # a URI once published to an object-store data root
    video_ids: tuple[str, ...]
    clip_count: int
    size_bytes: int


class ShardPacker:
    """Copy per-video staging parts into shards of about ``target_bytes``, one part at a time.

    Lets ingest pack while later videos are still decoding, so that its commit only renames
    files. A video's clips never straddle two shards. Shard names derive from
    ``name_prefix`` and the video ids they hold, so packing the same parts in the same order
    again writes the same files instead of adding new ones. JPEG frames gain nothing from
    zstd: pass ``compression="none"`` for them. Use as a context manager: on an error the
    open shard is discarded; ``close`` seals it and returns every shard written.
    """

    def __init__(self, out_dir: Path, *, name_prefix: str, target_bytes: int, compression: str = "zstd",
                 compression_level: int = 1):
        self.out_dir = Path(out_dir)
        self.name_prefix = name_prefix
        self.target_bytes = target_bytes
        self.compression = compression
        self.compression_level = compression_level
        self.shards: list[PackedShard] = []
        self._writer: ShardWriter | None = None
        self._video_ids: list[str] = []
        self._bytes = 0

    def __enter__(self) -> "ShardPacker":
        return self

    def add(self, video_id: str, part: Path) -> None:
        """Append one video's part; starts a new shard first if this one would pass the target size."""
        source = pq.ParquetFile(part, memory_map=True)  # a missing part fails here, before any state changes
        size = Path(part).stat().st_size
        if self._writer is not None and self._bytes + size > self.target_bytes:
            self._seal()
        if self._writer is None:
            self._writer = ShardWriter(self.out_dir / f"{self.name_prefix}-open.parquet", compression=self.compression,
                                       compression_level=self.compression_level).__enter__()
        for index in range(source.num_row_groups):
            self._writer.write_table(source.read_row_group(index))
        self._video_ids.append(video_id)
        self._bytes += size

    def close(self) -> list[PackedShard]:
        """Seal the open shard; every shard written, in order."""
        if self._writer is not None:
            self._seal()
        return self.shards

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.__exit__(exc_type, exc, tb)  # removes the half-written file
            self._writer = None

    def _seal(self) -> None:
        import hashlib

        writer, video_ids = self._writer, tuple(self._video_ids)
        assert writer is not None
        self._writer, self._video_ids, self._bytes = None, [], 0
        writer.__exit__(None, None, None)
        digest = hashlib.blake2b("\n".join(sorted(video_ids)).encode(), digest_size=8).hexdigest()
        path = self.out_dir / f"{self.name_prefix}-{digest}.parquet"
        os.replace(writer.path, path)
        self.shards.append(PackedShard(path, video_ids, writer.clip_count, path.stat().st_size))


@contextlib.contextmanager
def reading(paths: Iterable[str | Path]) -> Iterator[None]:
    """Hold a shared lock on these shards for the block, so that no ingest deletes them meanwhile.

    A shard that is already gone was replaced by a re-ingest since the caller read the
    catalog: that is an error naming it, and a fresh read of the catalog is the remedy.
    One file stays open per shard, so the open-file limit is raised to fit when needed.
    Shards on an object store cannot be locked: they are only checked to exist (docs/SCALE.md).
    """
    from storage import objects

    wanted = sorted({str(p) for p in paths})
    for path in [p for p in wanted if objects.is_remote(p)]:
        if not objects.exists(path):
            raise FileNotFoundError(f"shard {path} is gone: an ingest re-made its videos' clips after this run "
                                    "read the catalog; start the run again")
    wanted = [p for p in wanted if not objects.is_remote(p)]
    _allow_open_files(len(wanted) + 256)
    held: list[IO[bytes]] = []
    try:
        for path in wanted:
            try:
                file = open(path, "rb")
                held.append(file)
                fcntl.flock(file, fcntl.LOCK_SH)  # waits while an ingest is deleting it
                if not os.path.samestat(os.stat(path), os.fstat(file.fileno())):  # deleted meanwhile
                    raise FileNotFoundError(path)
            except FileNotFoundError:
                raise FileNotFoundError(f"shard {path} is gone: an ingest re-made its videos' clips after this run "
                                        "read the catalog; start the run again") from None
        yield
    finally:
        for file in held:
            file.close()


def delete_unless_read(path: str | Path) -> bool:
    """Delete a shard unless a reader holds it (``reading``); whether it is gone now (object-store shards: always)."""
    from storage import objects

    if objects.is_remote(path):
        objects.delete(path)
        return True
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return True
    except PermissionError:
        return False
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.stat(path), os.fstat(file.fileno())):  # not a newer file of the same name
                os.unlink(path)
    return True


def _allow_open_files(count: int) -> None:
    """Raise this process's soft limit on open files to ``count`` where the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count if hard == resource.RLIM_INFINITY else min(count, hard), hard))
