"""Prefect tasks of the ingest-library flow: find, identify, probe, decode, pack and commit.

Each task is a thin wrapper over ``speednet/`` (media) and ``storage/`` (shards, catalog)
and can be called without Prefect as ``task.fn(...)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import glob
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from speednet.errors import MediaError, VideoNotFound, retryable_kinds
from speednet.isolation import run_isolated
from speednet.media import VIDEO_EXTENSIONS, ContainerInfo, content_hash, probe_containers
from storage import catalog, objects, shards
from storage.atomic import atomic_write, remove_dead_partials
from storage.shards import PackedShard, ShardPacker
from tasks.decode_job import decode_to_part
from tasks.ingest_params import IngestParams


@dataclass(frozen=True)
class VideoRef:
    """A library file and its identity (content hash), as seen at discovery."""

    path: str
    video_id: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class Failure:
    """A file that could not be ingested, and why (becomes a ``status='failed'`` row)."""

    path: str
    video_id: str
    error_kind: str
    error: str
    size_bytes: int | None = None
    mtime_ns: int | None = None


def failure_from(path: str, error: BaseException, ref: VideoRef | None = None) -> Failure:
    """A ``Failure`` for ``error``; unexpected exceptions keep their type so a bug is not mistaken for bad input."""
    kind = error.kind if isinstance(error, MediaError) else f"internal:{type(error).__name__}"
    video_id = ref.video_id if ref else "unreadable-" + content_hash_of_text(path)
    return Failure(path, video_id, kind, str(error), ref.size_bytes if ref else None, ref.mtime_ns if ref else None)


def content_hash_of_text(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@task(name="discover-videos", cache_policy=NO_CACHE)
def discover_videos(library: str) -> list[str]:
    """Video files under ``library``: a folder (searched recursively), a glob pattern, or one file.

    Files are picked by extension (see ``VIDEO_EXTENSIONS``); whether they really are videos
    is found out later and recorded. In a folder, hidden files and folders are skipped, as a
    glob skips them: writers' temp files, macOS's ``._*`` copies, ``.git``.
    """
    root = Path(library).expanduser()
    if root.is_file():
        candidates = [root]
    elif root.is_dir():
        candidates = [p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root))]
    else:
        candidates = [Path(p) for p in glob.glob(str(root), recursive=True) if Path(p).is_file()]
        if not candidates:
            raise FileNotFoundError(f"library {library!r} is neither a folder, a file, nor a glob matching any file")
    return sorted(str(p.resolve()) for p in candidates if p.suffix.lower() in VIDEO_EXTENSIONS)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def library_scope(library: str) -> Callable[[str], bool]:
    """A test of whether a catalogued path lies within ``library`` (a folder, a file, or a glob).

    Decides which catalogued videos a run over ``library`` may declare missing. A glob is
    matched with ``fnmatch`` from its resolved folder on, with and without its ``**/``
    parts (which glob lets match no folder at all); fnmatch's ``*`` also crosses folders,
    so the scope is, if anything, wider than what the glob finds.
    """
    root = Path(library).expanduser()
    if root.is_dir():
        folder = root.resolve()
        return lambda path: Path(path).is_relative_to(folder)
    if root.is_file():
        file = str(root.resolve())
        return lambda path: path == file
    pattern = os.path.abspath(str(root))
    base = os.path.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])  # the folder before the first wildcard
    pattern = glob.escape(str(Path(base).resolve())) + pattern[len(base):]
    patterns = {pattern, pattern.replace("**/", "")}
    return lambda path: any(fnmatch.fnmatchcase(path, p) for p in patterns)


@task(name="identify-videos", cache_policy=NO_CACHE)
def identify_videos(paths: list[str], catalog_path: str) -> tuple[list[VideoRef], list[Failure]]:
    """Content hash of every file; a file whose path, size and mtime match the catalog is not re-read."""
    known = catalog.known_files(catalog_path)

    def identify(path: str) -> VideoRef | Failure:
        try:
            stat = os.stat(path)
            seen = known.get(path)
            if seen and seen[:2] == (stat.st_size, stat.st_mtime_ns):
                return VideoRef(path, seen[2], stat.st_size, stat.st_mtime_ns)
            return VideoRef(path, content_hash(path), stat.st_size, stat.st_mtime_ns)
        except (OSError, MediaError) as e:
            error = e if isinstance(e, MediaError) else VideoNotFound(path, f"cannot read file: {e}")
            return failure_from(path, error)

    with ThreadPoolExecutor(max_workers=4) as pool:  # hashing releases the GIL; I/O bound
        results = list(pool.map(identify, paths))
    return [r for r in results if isinstance(r, VideoRef)], [r for r in results if isinstance(r, Failure)]


@task(name="select-new-videos", cache_policy=NO_CACHE)
def select_new_videos(refs: list[VideoRef], catalog_path: str, params: IngestParams) -> list[VideoRef]:
    """The videos to (re-)ingest: unseen content, changed parameters, or a failure worth retrying.

    One file per content: copies of the same bytes under several names are ingested once.
    """
    states = catalog.video_states(catalog_path)
    todo, seen = [], set()
    for ref in refs:
        if ref.video_id in seen:
            continue
        seen.add(ref.video_id)
        status, error_kind, params_hash = states.get(ref.video_id, (None, None, None))
        done = status == "ingested" or (status == "failed" and not _is_retryable(error_kind))
        if not (done and params_hash == params.params_hash):
            todo.append(ref)
    return todo


def _is_retryable(error_kind: str | None) -> bool:
    """Transient media errors and unexpected ones (``internal:*``, maybe a bug since fixed) are retried."""
    return error_kind in retryable_kinds() or (error_kind or "").startswith("internal:")


def batches(refs: list, workers: int, max_per_batch: int = 16,
            size: Callable[[object], float] = lambda ref: ref.size_bytes) -> list[list]:
    """Split videos into batches: few enough tasks for Prefect (HAZARDS.md), enough to keep every worker busy.

    Roughly largest first (``size``; by default file size, which stands in for decode work), so that a run is
    less likely to end with one core decoding a big video it picked up last while the others
    idle. Batches probe and queue concurrently, so the workers see this order per batch.
    """
    if not refs:
        return []
    refs = sorted(refs, key=size, reverse=True)
    per_batch = max(1, min(max_per_batch, len(refs) // (4 * workers)))
    return [refs[i:i + per_batch] for i in range(0, len(refs), per_batch)]


@task(name="ingest-videos", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def ingest_videos(refs: list[VideoRef], params: IngestParams, staging: str, decode_timeout_s: float) -> list[dict | Failure]:
    """Probe a batch of videos (one ffmpeg call), then decode each into a staging part in an isolated worker.

    Returns, per video, its catalog row or a ``Failure``: a bad file is recorded, it does not
    fail the batch. The staged part and its summary are keyed by (content hash, parameters),
    so a video staged by a killed run is not decoded again. Only unexpected errors (a full
    disk, a bug) fail the task, and Prefect retries it.
    """
    staged = {ref.video_id: _staged_row(ref, params, Path(staging)) for ref in refs}
    to_probe = [ref for ref in refs if staged[ref.video_id] is None]
    infos = dict(zip((ref.video_id for ref in to_probe), probe_containers([ref.path for ref in to_probe])))

    def one(ref: VideoRef) -> dict | Failure:
        if staged[ref.video_id] is not None:
            return staged[ref.video_id]
        info = infos[ref.video_id]
        try:
            if isinstance(info, MediaError):
                raise info
            return _decode_one(ref, info, params, Path(staging), decode_timeout_s)
        except MediaError as e:
            return failure_from(ref.path, e, ref)

    # all of the batch's videos queue at the worker pool at once, so no core idles at a batch's tail
    with ThreadPoolExecutor(max_workers=max(1, len(refs))) as waiters:
        return list(waiters.map(one, refs))


def _part_path(ref: VideoRef, params: IngestParams, staging: Path) -> Path:
    return staging / f"{ref.video_id}-{params.params_hash}.parquet"


def _staged_row(ref: VideoRef, params: IngestParams, staging: Path) -> dict | None:
    """The catalog row of a part a killed run already staged for this content and these parameters."""
    part = _part_path(ref, params, staging)
    summary_path = part.with_suffix(".json")
    if part.exists() and summary_path.exists():
        return {**json.loads(summary_path.read_text()), "path": ref.path}
    return None


def _decode_one(ref: VideoRef, info: ContainerInfo, params: IngestParams, staging: Path, decode_timeout_s: float) -> dict:
    part = _part_path(ref, params, staging)
    staging.mkdir(parents=True, exist_ok=True)
    row = run_isolated(decode_to_part, ref.path, ref.video_id, info, params.as_dict(), str(part),
                       path=ref.path, timeout_s=decode_timeout_s)
    with atomic_write(part.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(row))
    return row


class ShardStager:
    """Packs a run's staged parts into shards while later videos still decode.

    The shards are written into a folder of this run under the staging folder, and the
    commit moves them into place. The run holds a lock on that folder for its lifetime, so
    a later commit can tell a killed run's leftovers (removed) from a live run's (kept).
    Runs in the flow process: packing is a file copy, and a task per batch would only add
    orchestration (with a Dask cluster, the flow's machine must see the data folder too).
    Use as a context manager; the folder is gone on exit.
    """

    def __init__(self, staging: Path, params: IngestParams, target_shard_mb: float):
        token = uuid.uuid4().hex[:12]
        hidden = staging / f".{_PACKING_PREFIX}{token}"  # locked before it becomes visible to cleanup
        hidden.mkdir(parents=True)
        self._lock = open(hidden / _PACKING_LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.folder = staging / f"{_PACKING_PREFIX}{token}"
        os.replace(hidden, self.folder)
        self._packer = ShardPacker(self.folder, name_prefix=f"shard-{params.params_hash}",
                                   target_bytes=int(target_shard_mb * 2**20),
                                   compression="zstd" if params.frame_encoding == "raw" else "none")

    def __enter__(self) -> "ShardStager":
        return self

    def add(self, rows: list[dict]) -> list[dict]:
        """Append the staged parts of these catalog rows to the open shard; the rows whose part was packed.

        A part can only vanish when a concurrent run ingesting the same video committed it
        first; that row is left out (the video is in the catalog) instead of failing the run.
        """
        packed = []
        for row in rows:
            try:
                self._packer.add(row["video_id"], Path(row["part_path"]))
            except FileNotFoundError:
                if Path(row["part_path"]).exists():
                    raise
                continue
            packed.append(row)
        return packed

    def finish(self) -> list[PackedShard]:
        """Seal the last shard; every shard of this run, ready for ``commit_ingest``."""
        return self._packer.close()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._packer.__exit__(exc_type, exc, tb)
        self._lock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_PACKING_PREFIX = "packing-"
_PACKING_LOCK = ".lock"


@task(name="commit-ingest", cache_policy=NO_CACHE)
def commit_ingest(rows: list[dict], failures: list[Failure], refs: list[VideoRef], params: IngestParams,
                  catalog_path: str, shards_dir: str, packed: list[PackedShard], packing_dir: str,
                  library: str) -> dict:
    """Move the run's packed shards into place and record every outcome in the catalog, in one transaction.

    Holds the catalog's writer lock throughout, so concurrent runs queue. A run killed before
    the commit leaves its parts for the next run; its shard files, in place but unlisted, or
    still in its packing folder, are deleted here. Catalogued videos of ``library`` whose
    file is gone or holds other bytes now are marked missing; those found again, present.
    Shards no video points at any more (all re-ingested) are deleted unless being read.
    """
    stat_of = {ref.video_id: ref for ref in refs}
    now = catalog.utc_now()
    params_json = catalog.canonical_json(params.as_dict())
    shard_root = shards_dir  # a folder, or a URI under an object-store data root
    if objects.is_remote(shard_root):  # upload before taking the catalog's lock; a server-side move under it
        packed = [_upload_incoming(shard, shard_root, Path(packing_dir).name) for shard in packed]
    with catalog.writer(catalog_path) as con:
        removed = _delete_unlisted_shards(con, shard_root)
        _delete_dead_packing_folders(Path(packing_dir).parent, keep=Path(packing_dir))
        remove_dead_partials(Path(packing_dir).parent)  # of parts a killed run was writing
        packed = [_move_into(shard, shard_root) for shard in packed]
        shard_of = {vid: shard for shard in packed for vid in shard.video_ids}
        kept_shard = _shards_kept_through(con, failures)
        video_rows = [
            {**row, "status": "ingested", "mtime_ns": stat_of[row["video_id"]].mtime_ns,
             "ingest_params": params_json, "params_hash": params.params_hash,
             "short_side_px": params.short_side_px, "clip_frames": params.clip_frames,
             "shard_path": str(shard_of[row["video_id"]].path), "ingested_at": now}
            for row in rows
        ] + [
            {"video_id": f.video_id, "path": f.path, "size_bytes": f.size_bytes, "mtime_ns": f.mtime_ns,
             "status": "failed", "error_kind": f.error_kind, "error": f.error, "ingest_params": params_json,
             "params_hash": params.params_hash, "shard_path": kept_shard.get(f.video_id), "ingested_at": now}
            for f in failures
        ]
        catalog.upsert(con, "videos", "video_id", video_rows)
        seen = _unchanged(refs)  # under the lock: what this run saw that still holds
        id_at = {r.path: r.video_id for r in seen}
        _follow_moved_files(con, seen, id_at, {r["video_id"] for r in video_rows})
        # a run that sees no file at all marks nothing: an unmounted folder is likelier than a deleted library
        missing = _mark_missing(con, id_at, library_scope(library), now) if seen else 0
        catalog.upsert(con, "shards", "shard_path", [
            {"shard_path": str(s.path), "clip_count": s.clip_count, "video_count": len(s.video_ids),
             "size_bytes": s.size_bytes, "created_at": now} for s in packed
        ])
        unused = _drop_unused_shards(con)
    # files after the commit, so a failed one loses nothing; a file a reader holds stays, unlisted, for a later run
    removed.update({path: size for path, size in unused.items()  # only this data folder's own files
                    if objects.join(shard_root, objects.name(path)) == path and objects.exists(path)
                    and shards.delete_unless_read(path)})
    for row in rows:  # after the commit: until then, the parts are what a re-run resumes from
        Path(row["part_path"]).unlink(missing_ok=True)
        Path(row["part_path"]).with_suffix(".json").unlink(missing_ok=True)
    return {
        "ingested": len(rows), "failed": len(failures), "missing": missing, "clips": sum(r["clip_count"] for r in rows),
        "shards": [str(s.path) for s in packed], "shard_bytes": sum(s.size_bytes for s in packed),
        "shards_removed": len(removed), "removed_bytes": sum(removed.values()),
    }


def _shards_kept_through(con, failures: list[Failure]) -> dict[str, str]:
    """video_id -> shard, for transient failures of videos ingested before: their row keeps pointing at the old clips.

    The video is recorded as failed (training skips it) and retried by the next run, but
    its earlier clips are not deleted as unused meanwhile.
    """
    transient = [f.video_id for f in failures if _is_retryable(f.error_kind)]
    return dict(con.execute("SELECT video_id, shard_path FROM videos WHERE status = 'ingested' AND shard_path IS NOT NULL "
                            "AND video_id IN (SELECT unnest(?::VARCHAR[]))", [transient]).fetchall())


def _unchanged(refs: list[VideoRef]) -> list[VideoRef]:
    """The refs whose file still has the size and mtime seen at discovery (a run's view can be hours old)."""
    def same(ref: VideoRef) -> bool:
        try:
            stat = os.stat(ref.path)
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (ref.size_bytes, ref.mtime_ns)

    return [ref for ref in refs if same(ref)]


def _move_into(shard: PackedShard, shard_root: str) -> PackedShard:
    """The same shard, moved from the run's packing folder (or its upload prefix) into the shards folder."""
    return dataclasses.replace(shard, path=objects.move(shard.path, objects.join(shard_root, objects.name(shard.path))))


_INCOMING = "incoming"  # under an object-store shards folder: uploads waiting for their run's commit
_INCOMING_MAX_AGE_S = 24 * 3600  # an upload this old belongs to a run that died


def _upload_incoming(shard: PackedShard, shard_root: str, run_name: str) -> PackedShard:
    """The same shard, uploaded under ``<shards>/incoming/<run>/`` (unlisted, so no commit sweeps it meanwhile)."""
    target = objects.join(shard_root, _INCOMING, run_name, Path(shard.path).name)
    return dataclasses.replace(shard, path=objects.publish(shard.path, target))


def _delete_dead_packing_folders(staging: Path, keep: Path) -> None:
    """Remove packing folders whose run is gone (its lock is free); ``keep`` (this run's) and live runs' stay."""
    for folder in staging.glob(f"{_PACKING_PREFIX}*"):
        if folder == keep:
            continue
        try:
            with open(folder / _PACKING_LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run packs here
        except FileNotFoundError:
            continue  # its run has just removed it
        shutil.rmtree(folder, ignore_errors=True)
    for folder in staging.glob(f".{_PACKING_PREFIX}*"):  # a run killed while creating its folder
        try:
            if time.time() - folder.stat().st_mtime > 60:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            pass


def _delete_unlisted_shards(con, shard_root: str) -> dict[str, int]:
    """Remove shard files no catalog row vouches for, unless being read, and dead writers' temp files.

    Such files are left by a run killed between moving its shards in and committing, or
    were unused shards a reader held at an earlier commit. Returns path -> bytes removed.
    """
    listed = {objects.name(row[0]) for row in con.execute("SELECT shard_path FROM shards").fetchall()}
    removed = {}
    for path in objects.list_files(shard_root, ".parquet"):
        if objects.name(path) not in listed:  # by name: a data folder moved as a whole keeps its shards
            with contextlib.suppress(FileNotFoundError):
                size = objects.size(path)
                if shards.delete_unless_read(path):
                    removed[path] = size
    if not objects.is_remote(shard_root):
        remove_dead_partials(shard_root)
    else:  # uploads of runs that died before their commit
        objects.delete_older_than(objects.join(shard_root, _INCOMING), _INCOMING_MAX_AGE_S)
    return removed


def _drop_unused_shards(con) -> dict[str, int]:
    """Drop the rows of shards no catalogued video points at any more; their paths and sizes, to delete.

    A re-ingest (new parameters, or a concurrent run that committed the same video) points
    videos at new shards, and the old ones hold only stale clips. The caller deletes the
    files once the catalog has committed; a shard a reader holds (``shards.reading``: a
    training run) stays on disk, unlisted, until a later commit finds it free.
    """
    unused = dict(con.execute("SELECT shard_path, size_bytes FROM shards WHERE shard_path NOT IN "
                              "(SELECT shard_path FROM videos WHERE shard_path IS NOT NULL)").fetchall())
    con.execute("DELETE FROM shards WHERE shard_path IN (SELECT unnest(?::VARCHAR[]))", [list(unused)])
    return unused


def _follow_moved_files(con, seen: list[VideoRef], id_at: dict[str, str], just_written: set[str]) -> None:
    """Point known videos whose catalogued path no longer holds them at where their bytes are now.

    A rename keeps id and clips; so does a move followed by a new file under the old name.
    ``id_at`` maps each path this run saw (and still trusts) to the video it holds.
    """
    current = dict(con.execute("SELECT video_id, path FROM videos").fetchall())
    moved = {r.video_id: r for r in seen
             if r.video_id not in just_written and r.video_id in current
             and current[r.video_id] != r.path and _displaced(current[r.video_id], r.video_id, id_at)}
    if moved:
        con.executemany("UPDATE videos SET path = ?, mtime_ns = ? WHERE video_id = ?",
                        [(r.path, r.mtime_ns, r.video_id) for r in moved.values()])


def _mark_missing(con, id_at: dict[str, str], in_library: Callable[[str], bool], now) -> int:
    """Set ``missing_since`` on catalogued videos of this library no longer found; clear it on those found again.

    A video is missing when its path no longer holds it and its bytes were not seen
    elsewhere in this run (moved files were followed first). Nothing is deleted: its clips
    and scores stay, and the mark clears if the bytes come back. Returns how many videos
    were newly marked.
    """
    found = set(id_at.values())
    con.execute("UPDATE videos SET missing_since = NULL WHERE missing_since IS NOT NULL "
                "AND video_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(found)])
    present = con.execute("SELECT video_id, path FROM videos WHERE missing_since IS NULL").fetchall()
    gone = [vid for vid, path in present if vid not in found and in_library(path) and _displaced(path, vid, id_at)]
    con.execute("UPDATE videos SET missing_since = ? WHERE video_id IN (SELECT unnest(?::VARCHAR[]))", [now, gone])
    return len(gone)


def _displaced(path: str, video_id: str, id_at: dict[str, str]) -> bool:
    """Whether ``path`` no longer holds ``video_id``: the file is gone, or this run saw other bytes there."""
    return id_at.get(path, video_id) != video_id or not os.path.exists(path)
