"""Files at a location that is a local path or an object-store URI (``s3://bucket/prefix``), through ``pyarrow.fs``.

speednet's bulky outputs (shards, staged score parts, checkpoints, vector parts and
indexes, renders) live under one *data root* (``storage.paths.data_root``): the local data
folder by default, or a bucket that every worker of a Dask cluster or work pool can reach.
The DuckDB catalog and Prefect's state stay local to the flow's machine.

A location is a plain string. Local ones keep today's behaviour exactly (temp file +
rename); on an object store a single PUT is already all-or-nothing, so an object appears
only when complete. S3 settings come from the usual AWS variables (``AWS_ENDPOINT_URL``
for MinIO or another S3-compatible server, ``AWS_ACCESS_KEY_ID`` …), read by Arrow.
Code that needs a real file (torch.load, FAISS, ffmpeg) takes a local copy (``local_copy``)
or writes locally and publishes (``publish``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.atomic import atomic_write, partial_path


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` names an object store (``scheme://…`` other than file://), not a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def join(location: str | Path, *names: str) -> str:
    """``location/name/…``, for local paths and URIs alike."""
    if not is_remote(location):
        return str(Path(location).joinpath(*names))
    return "/".join([str(location).rstrip("/"), *(n.strip("/") for n in names)])


def name(location: str | Path) -> str:
    """The last component of a location (its file name)."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def resolve(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a location; local paths get the local filesystem."""
    if not is_remote(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    return _filesystem_of(str(location))


def _filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    scheme_and_bucket = uri.split("/", 3)[:3]
    filesystem = _cached_filesystem("/".join(scheme_and_bucket), os.environ.get("AWS_ENDPOINT_URL", ""))
    return filesystem, uri.split("://", 1)[1]


_filesystems: dict[tuple[str, str, int], pafs.FileSystem] = {}


def _cached_filesystem(root: str, endpoint: str) -> pafs.FileSystem:
    """One filesystem object per (scheme://bucket, endpoint) and process: Arrow's S3 client is costly to build,
    and a forked child (a DataLoader worker) must not reuse its parent's."""
    key = (root, endpoint, os.getpid())
    if key not in _filesystems:
        _filesystems[key] = pafs.FileSystem.from_uri(root)[0]
    return _filesystems[key]


def exists(location: str | Path) -> bool:
    """Whether a file is at ``location``."""
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type == pafs.FileType.File


def size(location: str | Path) -> int:
    """Bytes of the file at ``location``; FileNotFoundError when there is none."""
    filesystem, path = resolve(location)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(str(location))
    return int(info.size)


def list_files(location: str | Path, suffix: str = "") -> list[str]:
    """Locations of the files directly in a folder (none when it does not exist), sorted; hidden temp files left out."""
    filesystem, path = resolve(location)
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(join(location, info.base_name) for info in infos
                  if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
                  and not info.base_name.startswith("."))


def delete(location: str | Path) -> None:
    """Remove the file at ``location``; nothing if it is already gone."""
    filesystem, path = resolve(location)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        pass


def delete_tree(location: str | Path) -> None:
    """Remove a folder (prefix) and everything under it; nothing if it is absent."""
    if not is_remote(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    filesystem, path = resolve(location)
    try:
        filesystem.delete_dir(path)
    except FileNotFoundError:
        pass


def read_bytes(location: str | Path) -> bytes:
    """The whole file at ``location``."""
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(location: str | Path, data: bytes) -> str:
    """Write a whole file so that readers see the old one or the new one, never half; the location."""
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(location) as tmp:
            tmp.write_bytes(data)
        return str(location)
    filesystem, path = resolve(location)
    with filesystem.open_output_stream(path) as stream:  # one object, visible when the upload completes
        stream.write(data)
    return str(location)


def write_parquet(location: str | Path, table: pa.Table) -> str:
    """Write ``table`` as one Parquet file at ``location``, atomically; the location."""
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(location) as tmp:
            pq.write_table(table, tmp)
        return str(location)
    filesystem, path = resolve(location)
    pq.write_table(table, path, filesystem=filesystem)
    return str(location)


def read_table(location: str | Path) -> pa.Table:
    """A whole Parquet file; FileNotFoundError when it is absent."""
    filesystem, path = resolve(location)
    return pq.read_table(path, filesystem=filesystem)


def read_schema(location: str | Path) -> pa.Schema:
    """A Parquet file's schema (with its metadata), from the footer alone."""
    filesystem, path = resolve(location)
    with filesystem.open_input_file(path) as file:
        return pq.read_schema(file)


def parquet_file(location: str | Path) -> pq.ParquetFile:
    """A Parquet file opened for reading row groups (local files memory-mapped)."""
    if not is_remote(location):
        return pq.ParquetFile(str(location), memory_map=True)
    filesystem, path = resolve(location)
    return pq.ParquetFile(filesystem.open_input_file(path))


def publish(local_file: str | Path, location: str | Path) -> str:
    """Move a finished local file to ``location`` (a rename locally, an upload then delete remotely); the location."""
    if not is_remote(location):
        if Path(local_file).resolve() != Path(location).resolve():
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(local_file, location)
            except OSError as e:  # another filesystem (a data root on a mounted share): copy beside, then rename
                if e.errno != errno.EXDEV:
                    raise
                with atomic_write(location) as tmp:
                    shutil.copyfile(local_file, tmp)
                Path(local_file).unlink()
        return str(location)
    filesystem, path = resolve(location)
    pafs.copy_files(str(Path(local_file).resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=filesystem)
    Path(local_file).unlink(missing_ok=True)
    return str(location)


def move(source: str | Path, target: str | Path) -> str:
    """Move a file to ``target``: ``publish`` for a local source; a server-side move within one object store."""
    if not is_remote(source):
        return publish(source, target)
    filesystem, source_path = resolve(source)
    target_filesystem, target_path = resolve(target)
    if target_filesystem is not filesystem:
        raise ValueError(f"cannot move {source} to {target}: another store")
    filesystem.move(source_path, target_path)
    return str(target)


def delete_older_than(location: str | Path, seconds: float) -> int:
    """Delete the files anywhere under a folder (prefix) last written more than ``seconds`` ago; how many."""
    import time

    filesystem, prefix = resolve(location)
    infos = filesystem.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    stale = [info.path for info in infos
             if info.type == pafs.FileType.File and time.time() - info.mtime_ns / 1e9 > seconds]
    for path in stale:
        filesystem.delete_file(path)
    return len(stale)


@contextmanager
def staging_file(location: str | Path) -> Iterator[Path]:
    """A local path to write the file for ``location`` into; on success it is published there, on error removed.

    For writers that need a real file (FAISS, ffmpeg, torch.save): locally this is
    ``atomic_write`` beside the target; for an object store, a temp file then one upload.
    """
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(location) as tmp:
            yield tmp
        return
    folder = Path(tempfile.mkdtemp(prefix="speednet-upload-"))
    try:
        tmp = folder / name(location)
        yield tmp
        publish(tmp, location)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def local_copy(location: str | Path, cache_dir: str | Path | None = None, version: str | None = None) -> Path:
    """A local file with the content of ``location``: the path itself when local, else a cached download.

    Downloads go to ``cache_dir`` (default ``$SPEEDNET_CACHE`` or ``~/.cache/speednet``) under
    a name derived from the URI, the object's size and modification time and ``version``
    (a token the writer changed, for files whose size can repeat within a second), so a
    replaced object is fetched again; the previous copy of the same URI is deleted then.
    """
    if not is_remote(location):
        return Path(location)
    cache = Path(cache_dir or os.environ.get("SPEEDNET_CACHE") or Path.home() / ".cache" / "speednet") / "objects"
    filesystem, path = resolve(location)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(str(location))
    uri_key = hashlib.blake2b(str(location).encode(), digest_size=6).hexdigest()
    stamp = hashlib.blake2b(f"{info.size}|{info.mtime_ns}|{version}".encode(), digest_size=6).hexdigest()
    target = cache / f"{uri_key}-{stamp}-{name(location)}"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        for older in cache.glob(f"{uri_key}-*-{name(location)}"):
            older.unlink(missing_ok=True)
        tmp = partial_path(target)
        try:
            pafs.copy_files(path, str(tmp), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target
