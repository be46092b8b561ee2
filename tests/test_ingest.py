"""The ingest-library flow end to end on real files, against the real DuckDB catalog."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import duckdb
import numpy as np
import pytest

from _catalog import rows as catalog_rows
from conftest import EXPECTED_KIND, exited_pid, leftover_partial, make_video
from flows.ingest import ingest_library
from speednet.media import VideoDecoder, probe_container
from storage import catalog, shards
from storage.shards import ShardWriter, iter_clips
import tasks.ingest
from tasks.ingest import (Failure, ShardStager, VideoRef, _delete_dead_packing_folders, _shards_kept_through, _unchanged,
                          batches, discover_videos)
from tasks.ingest_params import IngestParams
from tasks.score import select_unscored
from tasks.search import _video_id_of

SMALL = dict(short_side_px=64, clip_frames=16)




def test_good_files_are_ingested_and_each_bad_file_is_recorded_with_its_reason(library, home):
    summary = ingest_library(library=str(library), **SMALL)

    assert (summary["found"], summary["ingested"], summary["failed"]) == (10, 3, 7)
    rows = dict(catalog_rows(home, "SELECT regexp_extract(path, '[^/]+$'), status FROM videos"))
    assert rows["a.mp4"] == rows["b.mp4"] == rows["c.mov"] == "ingested"
    failed = dict(catalog_rows(home, "SELECT regexp_extract(path, '[^/]+$'), error_kind FROM ingest_failures"))
    assert failed == {
        "truncated.mp4": EXPECTED_KIND["truncated_no_index"], "truncated_faststart.mp4": EXPECTED_KIND["truncated_mid_stream"],
        "empty.mp4": EXPECTED_KIND["zero_bytes"], "notes.mp4": EXPECTED_KIND["text"],
        "audio.mp4": EXPECTED_KIND["audio_only"], "picture.mp4": EXPECTED_KIND["still_image"],
        "one_frame.mp4": EXPECTED_KIND["one_frame"],
    }
    for (error,) in catalog_rows(home, "SELECT error FROM videos WHERE status = 'failed'"):
        assert str(library) in error and "(" in error  # names the file and says what to do
    # 2 s and 3 s at 25 fps in clips of 16 frames: 3 + 4 + 3 clips
    assert catalog_rows(home, "SELECT sum(clip_count) FROM ingested_videos")[0][0] == summary["clips"] == 10
    listed = {p for (p,) in catalog_rows(home, "SELECT shard_path FROM shards")}
    assert listed == {p for (p,) in catalog_rows(home, "SELECT DISTINCT shard_path FROM ingested_videos")}
    assert set(map(str, (home / "shards").glob("*.parquet"))) == listed
    assert not list((home / "shards" / "staging").glob("*"))


def test_raw_shard_frames_equal_a_direct_decode_of_the_source(library, home):
    ingest_library(library=str(library), frame_encoding="raw", **SMALL)
    ((video_id, path, shard),) = catalog_rows(home, "SELECT video_id, path, shard_path FROM videos WHERE path LIKE '%b.mp4'")
    clips = list(iter_clips(shard, video_ids=[video_id]))
    assert [c.clip_index for c in clips] == [0, 1, 2, 3]
    decoder = VideoDecoder(path, probe_container(path), short_side_px=64)
    for clip in clips:
        np.testing.assert_array_equal(clip.frames, decoder.decode(clip.frame_indices))
        assert clip.frames.shape == (16, 64, 114, 3) and clip.fps == 25.0
        np.testing.assert_allclose(clip.t_seconds, clip.frame_indices / 25.0)


def test_rerun_does_nothing_new_and_leaves_the_same_state(library, home):
    ingest_library(library=str(library), **SMALL)
    before = catalog_rows(home, "SELECT * EXCLUDE (ingested_at) FROM videos ORDER BY video_id")
    shards_before = sorted((p.name, p.stat().st_mtime_ns) for p in (home / "shards").glob("*.parquet"))

    summary = ingest_library(library=str(library), **SMALL)

    assert (summary["ingested"], summary["failed"], summary["skipped"]) == (0, 0, 10)
    assert catalog_rows(home, "SELECT * EXCLUDE (ingested_at) FROM videos ORDER BY video_id") == before
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (home / "shards").glob("*.parquet")) == shards_before


def test_renamed_file_is_not_redone_and_changed_file_is(library, home):
    ingest_library(library=str(library), **SMALL)
    (old_id,) = catalog_rows(home, "SELECT video_id FROM videos WHERE path LIKE '%/a.mp4'")[0]
    (library / "a.mp4").rename(library / "renamed.mp4")
    make_video(library / "c.mov", seconds=1.0, source="smptebars")  # same name, new content

    summary = ingest_library(library=str(library), **SMALL)

    assert summary["ingested"] == 1 and summary["missing"] == 1  # c.mov's old bytes are gone
    assert catalog_rows(home, "SELECT path FROM videos WHERE video_id = ?", [old_id])[0][0].endswith("renamed.mp4")
    assert len(catalog_rows(home, "SELECT 1 FROM videos WHERE path LIKE '%c.mov'")) == 2  # old and new content
    assert len(catalog_rows(home, "SELECT 1 FROM ingested_videos WHERE path LIKE '%c.mov'")) == 1


def test_deleted_and_overwritten_files_are_missing_until_their_bytes_return(library, home, tmp_path):
    ingest_library(library=str(library), **SMALL)
    ids = dict(catalog_rows(home, "SELECT regexp_extract(path, '[^/]+$'), video_id FROM videos"))
    aside = tmp_path / "aside"
    aside.mkdir()
    (library / "a.mp4").rename(aside / "a.mp4")  # deleted from the library (mtime kept: it can come back)
    (library / "bad" / "notes.mp4").unlink()  # a failed file deleted
    make_video(library / "c.mov", seconds=1.0, source="smptebars")  # overwritten with other bytes
    other = make_video(tmp_path / "other" / "x.mp4", seconds=1.0).parent

    assert ingest_library(library=str(other), **SMALL)["missing"] == 0  # another library: none of these is its own
    summary = ingest_library(library=str(library), **SMALL)

    assert (summary["ingested"], summary["missing"]) == (1, 3)
    missing = {vid for (vid,) in catalog_rows(home, "SELECT video_id FROM missing_videos")}
    assert missing == {ids["a.mp4"], ids["c.mov"], ids["notes.mp4"]}
    present = catalog_rows(home, "SELECT regexp_extract(path, '[^/]+$'), video_id FROM ingested_videos ORDER BY 1")
    assert [name for name, _ in present] == ["b.mp4", "c.mov", "x.mp4"] and ids["c.mov"] not in dict(present).values()
    assert "notes.mp4" not in {p.rsplit("/", 1)[-1] for (p,) in catalog_rows(home, "SELECT path FROM ingest_failures")}
    catalog_path = str(home / "catalog.duckdb")
    assert {v.video_id for v in select_unscored.fn(catalog_path, "any-model")} == set(dict(present).values())
    with catalog.writer(catalog_path) as con:  # a path query finds the file's present bytes, not its old ones
        assert _video_id_of(con, str(library / "c.mov")) == dict(present)["c.mov"]

    (aside / "a.mp4").rename(library / "a.mp4")
    summary = ingest_library(library=str(library), **SMALL)

    assert (summary["ingested"], summary["missing"]) == (0, 0)  # found again: nothing to decode
    missing = {vid for (vid,) in catalog_rows(home, "SELECT video_id FROM missing_videos")}
    assert missing == {ids["c.mov"], ids["notes.mp4"]}
    assert ids["a.mp4"] in {vid for (vid,) in catalog_rows(home, "SELECT video_id FROM ingested_videos")}


def test_a_file_moved_aside_and_replaced_under_its_name_is_followed(library, home):
    ingest_library(library=str(library), **SMALL)
    (old_id,) = catalog_rows(home, "SELECT video_id FROM videos WHERE path LIKE '%/a.mp4'")[0]
    (library / "a.mp4").rename(library / "a-old.mp4")
    make_video(library / "a.mp4", seconds=1.0, source="smptebars")

    summary = ingest_library(library=str(library), **SMALL)

    assert (summary["ingested"], summary["missing"]) == (1, 0)
    assert catalog_rows(home, "SELECT path FROM videos WHERE video_id = ?", [old_id])[0][0].endswith("a-old.mp4")
    assert len(catalog_rows(home, "SELECT 1 FROM ingested_videos WHERE path LIKE '%/a.mp4'")) == 1


def test_a_glob_library_marks_its_own_deleted_files_only(library, home):
    ingest_library(library=str(library / "**" / "*.mp4"), **SMALL)  # a.mp4 and nested/b.mp4, not c.mov
    (library / "a.mp4").unlink()  # `**/` matching no folder at all
    (library / "nested" / "b.mp4").unlink()
    (library / "c.mov").unlink()  # outside the glob

    summary = ingest_library(library=str(library / "**" / "*.mp4"), **SMALL)

    assert summary["missing"] == 2
    assert sorted(p.rsplit("/", 1)[-1] for (p,) in catalog_rows(home, "SELECT path FROM missing_videos")) == ["a.mp4", "b.mp4"]


def test_a_transient_failure_keeps_the_earlier_clips_of_an_ingested_video(library, home):
    ingest_library(library=str(library), **SMALL)
    ids = dict(catalog_rows(home, "SELECT regexp_extract(path, '[^/]+$'), video_id FROM videos"))
    shard_of = dict(catalog_rows(home, "SELECT video_id, shard_path FROM videos WHERE status = 'ingested'"))
    timeout = Failure(str(library / "a.mp4"), ids["a.mp4"], "decode_timeout", "took too long")
    too_short = Failure(str(library / "c.mov"), ids["c.mov"], "too_short", "shorter than one clip")
    new_file = Failure(str(library / "new.mp4"), "new-id", "not_found", "gone")
    with catalog.writer(home / "catalog.duckdb") as con:
        # a.mp4 is retried by the next run and its clips stay meanwhile; c.mov is too short for new clip settings
        assert _shards_kept_through(con, [timeout, too_short, new_file]) == {ids["a.mp4"]: shard_of[ids["a.mp4"]]}


def test_a_failed_commit_deletes_no_shard(library, home, monkeypatch):
    ingest_library(library=str(library), **SMALL, target_shard_mb=0.001)
    before = catalog_rows(home, "SELECT shard_path FROM shards ORDER BY 1")
    real_drop = tasks.ingest._drop_unused_shards

    def drop_then_fail(con):
        assert real_drop(con)  # every old shard is unused under the new parameters
        raise RuntimeError("the catalog commit failed")

    monkeypatch.setattr(tasks.ingest, "_drop_unused_shards", drop_then_fail)
    with pytest.raises(RuntimeError, match="commit failed"):
        ingest_library(library=str(library), short_side_px=64, clip_frames=24, target_shard_mb=0.001)
    assert catalog_rows(home, "SELECT shard_path FROM shards ORDER BY 1") == before
    assert all(os.path.exists(path) for (path,) in before)


def test_a_run_that_sees_no_file_marks_nothing_missing(library, home, tmp_path):
    ingest_library(library=str(library), **SMALL)
    emptied = library.rename(tmp_path / "aside")
    library.mkdir()  # as an unmounted mount point looks

    assert ingest_library(library=str(library), **SMALL)["missing"] == 0
    assert catalog_rows(home, "SELECT count(*) FROM missing_videos") == [(0,)]
    assert emptied.exists()


def test_a_run_trusts_only_files_unchanged_since_it_looked(tmp_path):
    kept, rewritten, deleted = (make_video(tmp_path / f"{name}.mp4", seconds=0.5) for name in ("kept", "rewritten", "deleted"))
    refs = [VideoRef(str(p), "id-" + p.stem, p.stat().st_size, p.stat().st_mtime_ns) for p in (kept, rewritten, deleted)]
    make_video(rewritten, seconds=0.6)
    deleted.unlink()
    assert [r.path for r in _unchanged(refs)] == [str(kept)]


def test_a_catalog_made_before_missing_since_gets_it_even_when_first_opened_to_read(home):
    path = home / "catalog.duckdb"
    with catalog.writer(path) as con:
        catalog.upsert(con, "videos", "video_id", [{"video_id": "v1", "path": "/old/v1.mp4", "status": "ingested",
                                                     "ingested_at": catalog.utc_now()}])
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW missing_videos")  # as catalogs of schema version 1 were
    con.execute("ALTER TABLE videos DROP COLUMN missing_since")
    con.execute("UPDATE schema_version SET version = 1")
    con.close()

    con = catalog.connect(path, read_only=True)  # e.g. `speednet search` right after an upgrade
    try:
        assert "missing_since" in {name for name, *_ in con.execute("DESCRIBE videos").fetchall()}
        assert con.execute("SELECT count(*) FROM missing_videos").fetchone() == (0,)
        assert con.execute("SELECT video_id FROM ingested_videos").fetchall() == [("v1",)]
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(catalog.SCHEMA_VERSION,)]
    finally:
        con.close()


def test_changing_clip_parameters_reingests(library, home):
    ingest_library(library=str(library), **SMALL)
    summary = ingest_library(library=str(library), short_side_px=64, clip_frames=24)
    assert summary["ingested"] == 3
    assert {n for (n,) in catalog_rows(home, "SELECT DISTINCT clip_frames FROM ingested_videos")} == {24}


def test_shards_of_re_ingested_videos_are_deleted_unless_being_read(library, home):
    one_video_each = dict(target_shard_mb=0.001)  # every video its own shard
    ingest_library(library=str(library), **SMALL, **one_video_each)
    old = {p for (p,) in catalog_rows(home, "SELECT shard_path FROM shards")}
    read = sorted(old)[0]
    assert len(old) == 3

    with shards.reading([read]):  # as a training run holds its shards
        summary = ingest_library(library=str(library), short_side_px=64, clip_frames=24, **one_video_each)

    assert (summary["ingested"], summary["shards_removed"]) == (3, 2) and summary["removed_bytes"] > 0
    listed = {p for (p,) in catalog_rows(home, "SELECT shard_path FROM shards")}
    assert not listed & old and os.path.exists(read)  # unlisted, but on disk while read
    assert not any(os.path.exists(p) for p in old - {read})
    summary = ingest_library(library=str(library), short_side_px=64, clip_frames=24)  # nothing new; the reader is done
    assert (summary["ingested"], summary["shards_removed"]) == (0, 1) and not os.path.exists(read)
    in_use = {p for (p,) in catalog_rows(home, "SELECT DISTINCT shard_path FROM videos WHERE shard_path IS NOT NULL")}
    assert {p for (p,) in catalog_rows(home, "SELECT shard_path FROM shards")} == in_use
    assert set(map(str, (home / "shards").glob("*.parquet"))) == in_use


def test_a_reader_is_told_when_its_shard_was_deleted_first(tmp_path):
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(b"x")
    assert shards.delete_unless_read(shard) and not shard.exists()
    with pytest.raises(FileNotFoundError, match="shard .* is gone: an ingest re-made"):
        with shards.reading([shard]):
            pass


def test_a_reader_that_waited_for_a_deletion_is_told_too(tmp_path):
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(b"x")
    outcome = []

    def read() -> None:
        try:
            with shards.reading([shard]):
                outcome.append("read")
        except FileNotFoundError as e:
            outcome.append(str(e))

    def opened() -> int:
        return sum(os.readlink(f"/proc/self/fd/{fd}") == str(shard) for fd in os.listdir("/proc/self/fd")
                   if os.path.islink(f"/proc/self/fd/{fd}"))

    with open(shard, "rb") as deleter:
        fcntl.flock(deleter, fcntl.LOCK_EX)  # as delete_unless_read holds it while deleting
        reader = threading.Thread(target=read)
        reader.start()
        deadline = time.monotonic() + 10
        while opened() < 2 and time.monotonic() < deadline:  # the reader has the file open: it waits at the lock
            time.sleep(0.01)
        assert opened() == 2 and not outcome
        os.unlink(shard)
    reader.join(10)
    assert len(outcome) == 1 and "is gone" in outcome[0]


_RUN_FLOW = """
import sys
from flows.ingest import ingest_library
ingest_library(library=sys.argv[1], short_side_px=64, clip_frames=16)
"""


def test_a_killed_run_resumes_without_duplicates_or_half_written_files(tmp_path, home):
    library = tmp_path / "big"
    for i in range(6):
        make_video(library / f"v{i}.mp4", seconds=4.0 + 0.04 * i, size="320x180", source="testsrc2")  # distinct bytes
    env = {**os.environ, "SPEEDNET_HOME": str(home), "SPEEDNET_DECODE_WORKERS": "1"}
    run = subprocess.Popen([sys.executable, "-c", _RUN_FLOW, str(library)], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = home / "shards" / "staging"
    deadline = time.monotonic() + 240
    while not list(staging.glob("[!.]*.json")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    staged_before = len(list(staging.glob("[!.]*.json")))
    assert staged_before >= 1, "the run was killed before it staged anything; the test proves nothing"
    assert not (home / "catalog.duckdb").exists() or not catalog_rows(home, "SELECT * FROM videos")
    (home / "shards" / "shard-orphan.parquet").write_bytes(b"debris of a run killed while packing")
    dead = staging / "packing-killedrun"  # a killed run's packing folder: its lock is free
    dead.mkdir(exist_ok=True)
    (dead / ".lock").touch()
    (dead / "shard-half.parquet").write_bytes(b"half a shard")
    leftover_partial(staging / "0123-gone.parquet", exited_pid())  # a killed writer's part of a file since deleted
    live = staging / "packing-liverun"  # a concurrent run still packing: it holds its lock
    live.mkdir()
    live_lock = open(live / ".lock", "w")
    fcntl.flock(live_lock, fcntl.LOCK_EX)

    summary = ingest_library(library=str(library), **SMALL)

    assert not dead.exists()
    assert (live / ".lock").exists(), "a live run's packing folder was removed"
    live_lock.close()
    shutil.rmtree(live)

    assert summary["ingested"] == 6, summary
    assert catalog_rows(home, "SELECT count(*), count(DISTINCT video_id) FROM videos") == [(6, 6)]
    assert catalog_rows(home, "SELECT sum(clip_count) FROM videos")[0][0] == 6 * 6  # 100 frames -> 6 clips of 16
    shard_files = sorted(p.name for p in (home / "shards").iterdir() if p.is_file())
    assert all(name.startswith("shard-") and name.endswith(".parquet") and "orphan" not in name for name in shard_files)
    clips = [c for (shard,) in catalog_rows(home, "SELECT shard_path FROM shards") for c in iter_clips(shard)]
    assert len(clips) == len({(c.video_id, c.clip_index) for c in clips}) == 36
    assert not list(staging.glob("*"))


def _staged_part(path, video_id: str, clips: int = 2) -> dict:
    rng = np.random.default_rng(len(video_id))
    with ShardWriter(path, encoding="jpeg", compression="none") as writer:
        for c in range(clips):
            writer.write_clip(video_id, c, np.arange(4), 25.0, 25.0, rng.integers(0, 255, (4, 16, 24, 3), dtype=np.uint8))
    return {"video_id": video_id, "part_path": str(path)}


def test_packing_skips_a_part_that_a_concurrent_run_already_committed(tmp_path):
    staging = tmp_path / "staging"
    kept = _staged_part(tmp_path / "a.parquet", "va")
    gone = {"video_id": "vb", "part_path": str(tmp_path / "b.parquet")}  # committed and deleted by another run
    with ShardStager(staging, IngestParams(), target_shard_mb=64) as stager:
        assert stager.add([kept, gone]) == [kept]
        shards = stager.finish()
        assert [s.video_ids for s in shards] == [("va",)]
        assert sorted(c.video_id for c in iter_clips(shards[0].path)) == ["va", "va"]
        assert stager.folder.parent == staging and stager.folder.name.startswith("packing-")
    assert not list(staging.iterdir())  # the run's packing folder is gone on exit


def test_cleanup_spares_this_runs_packing_folder_even_without_a_working_lock(tmp_path):
    """Where flock is emulated per process (some network filesystems), the lock alone cannot protect the run's own folder."""
    own, dead = tmp_path / "packing-own", tmp_path / "packing-dead"
    for folder in (own, dead):
        folder.mkdir()
        (folder / ".lock").touch()  # no one holds either lock
    _delete_dead_packing_folders(tmp_path, keep=own)
    assert own.exists() and not dead.exists()


def test_batches_start_with_the_largest_files_and_cover_every_video_once():
    sizes = [5, 900, 40, 900, 7, 300, 1, 60, 2] + list(range(100, 131))  # 40 videos
    refs = [VideoRef(f"/v/{i}.mp4", f"id{i}", size_bytes=size, mtime_ns=0) for i, size in enumerate(sizes)]
    split = batches(refs, workers=1, max_per_batch=4)  # 40 // (4 * 1) = 10 per batch, capped at 4
    assert [len(batch) for batch in split] == [4] * 10
    flat = [ref for batch in split for ref in batch]
    assert sorted(flat, key=lambda r: r.path) == sorted(refs, key=lambda r: r.path)
    assert [ref.size_bytes for ref in flat] == sorted(sizes, reverse=True)
    assert [ref.path for ref in flat[:2]] == ["/v/1.mp4", "/v/3.mp4"]  # equal sizes keep their order
    assert [len(batch) for batch in batches(refs[:9], workers=1)] == [2, 2, 2, 2, 1]  # 9 // 4 = 2 per batch


def test_discovery_skips_hidden_files_and_folders_like_a_writers_temp_file(library):
    visible = discover_videos.fn(str(library))
    leftover_partial(library / "clip.mp4", os.getpid())  # a writer still at work
    (library / ".cache").mkdir()
    shutil.copy(visible[0], library / ".cache" / "copy.mp4")
    assert discover_videos.fn(str(library)) == visible


def test_reading_a_duckdb_file_that_is_no_catalog_leaves_it_alone(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    catalog.connect(path, read_only=True).close()  # e.g. `speednet sql --catalog other.duckdb`
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SHOW TABLES").fetchall() == [("t",)]
    finally:
        con.close()
