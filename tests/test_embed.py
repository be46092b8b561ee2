"""embed-library and retrieval against the real catalog and a real FAISS index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import faiss
import numpy as np
import pytest

from _pan import write_pan_video
from _catalog import register, rows
from conftest import make_video
from flows.embed import embed_library
from flows.ingest import ingest_library
from storage import vector_index
from tasks.search import search






@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embed-library")
    write_pan_video(root / "first" / "pan_a.mp4", speeds=[1.0], frames_each=90, seed=11)
    make_video(root / "first" / "pattern.mp4", seconds=3.0)
    write_pan_video(root / "later" / "pan_b.mp4", speeds=[1.0, 2.0], frames_each=50, seed=12)
    make_video(root / "later" / "mandel.mp4", seconds=3.0, source="mandelbrot")
    return root


@pytest.fixture
def home(tmp_path, monkeypatch, library, pan_model) -> tuple[Path, str]:
    home = tmp_path / "home"
    monkeypatch.setenv("SPEEDNET_HOME", str(home))
    ingest_library(library=str(library / "first"), data_home=str(home), short_side_px=64, clip_frames=16)
    return home, register(home, pan_model, "pan")


def index_contents(home: Path, model_id: str) -> dict[tuple[str, int], np.ndarray]:
    """(video_id, start_frame) -> vector, read back from the saved index file."""
    index = faiss.read_index(str(Path(vector_index.index_dir(home, model_id)) / "index.faiss"))
    return {(vid, frame): index.reconstruct(int(i)) for i, vid, frame in
            rows(home, "SELECT vector_id, video_id, start_frame FROM embeddings WHERE model_id = ?", [model_id])}


def test_every_window_is_indexed_and_within_video_neighbours_are_temporal_neighbours(home):
    home, model_id = home
    summary = embed_library(stride=4)

    frames = dict(rows(home, "SELECT video_id, frame_count FROM ingested_videos"))
    windows = dict(rows(home, "SELECT video_id, count(*) FROM embeddings GROUP BY 1"))
    assert windows == {vid: (n - 16) // 4 + 1 for vid, n in frames.items()}
    assert summary["vectors"] == sum(windows.values()) and summary["index_type"] == "flat"
    index = faiss.read_index(str(Path(summary["index_dir"]) / "index.faiss"))  # plain FAISS can load it
    assert index.ntotal == summary["vectors"] and index.d == 256
    manifest = json.loads((Path(summary["index_dir"]) / "manifest.json").read_text())
    assert manifest["model_id"] == model_id and manifest["count"] == index.ntotal

    pan = next(vid for vid, p in rows(home, "SELECT video_id, path FROM videos") if p.endswith("pan_a.mp4"))
    hits = search(video=pan, at_s=1.6, k=2, scope="within")
    query_start = 1.6 - 16 / 25 / 2
    assert all(abs(h.start_s - query_start) <= 8 / 25 + 1e-6 for h in hits), hits  # the adjacent windows
    assert all(h.video_id == pan and h.similarity > 0.9 for h in hits)
    across = search(video=pan, at_s=1.6, k=5, scope="across")
    assert len(across) == 5 and all(h.video_id != pan for h in across)
    assert [h.similarity for h in across] == sorted((h.similarity for h in across), reverse=True)

    again = embed_library(stride=4)  # nothing new: nothing changes
    assert again["embedded"] == 0 and again["vectors"] == summary["vectors"]


def test_incremental_add_equals_a_full_rebuild(home, library):
    home, model_id = home
    embed_library(stride=8)
    ingest_library(library=str(library), data_home=str(home), short_side_px=64, clip_frames=16)  # adds "later"
    assert embed_library(stride=8)["embedded"] == 2
    incremental = index_contents(home, model_id)
    query = next(vid for vid, p in rows(home, "SELECT video_id, path FROM videos") if p.endswith("pan_b.mp4"))
    found = [(h.video_id, h.start_s) for h in search(video=query, at_s=1.0, k=8)]

    rebuilt_summary = embed_library(stride=8, rebuild=True)
    rebuilt = index_contents(home, model_id)
    assert rebuilt_summary["embedded"] == 4
    assert incremental.keys() == rebuilt.keys()
    assert all(np.allclose(incremental[key], rebuilt[key], atol=1e-6) for key in rebuilt)
    assert [(h.video_id, h.start_s) for h in search(video=query, at_s=1.0, k=8)] == found

    with pytest.raises(ValueError, match="rebuild"):
        embed_library(stride=4)  # another stride would mix two kinds of window in one index


def test_a_run_killed_between_catalog_and_index_leaves_the_old_index_and_is_repaired(home, library, monkeypatch):
    home, model_id = home
    before = embed_library(stride=8)["vectors"]
    ingest_library(library=str(library), data_home=str(home), short_side_px=64, clip_frames=16)
    real_save = vector_index.save_index

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the catalog commit, before the index was replaced")

    monkeypatch.setattr(vector_index, "save_index", killed)
    with pytest.raises(BaseException):
        embed_library(stride=8)
    monkeypatch.setattr(vector_index, "save_index", real_save)

    directory = Path(vector_index.index_dir(home, model_id))
    assert faiss.read_index(str(directory / "index.faiss")).ntotal == before  # the previous index, intact
    in_catalog = rows(home, "SELECT count(*) FROM embeddings")[0][0]
    assert in_catalog > before  # the catalog got ahead of the index

    assert embed_library(stride=8)["embedded"] == 0  # nothing to embed, but the index is repaired
    assert index_contents(home, model_id).keys() == {(v, f) for v, f in rows(home, "SELECT video_id, start_frame FROM embeddings")}
    assert faiss.read_index(str(directory / "index.faiss")).ntotal == in_catalog


def test_windows_of_a_video_gone_from_its_library_are_not_returned(home, library, tmp_path):
    home, model_id = home
    embed_library(stride=8)
    ids = {p.rsplit("/", 1)[-1]: vid for vid, p in rows(home, "SELECT video_id, path FROM videos")}
    assert ids["pattern.mp4"] in {h.video_id for h in search(video=ids["pan_a.mp4"], at_s=1.0, k=50)}
    pattern = library / "first" / "pattern.mp4"
    shutil.move(pattern, tmp_path / "away.mp4")
    try:
        summary = ingest_library(library=str(library / "first"), data_home=str(home), short_side_px=64, clip_frames=16)
        hits = search(video=ids["pan_a.mp4"], at_s=1.0, k=50)
    finally:
        shutil.move(tmp_path / "away.mp4", pattern)
    assert summary["missing"] == 1
    assert hits and {h.video_id for h in hits} == {ids["pan_a.mp4"]}


def test_vanished_files_are_recorded_and_bad_queries_say_what_is_wrong(home, pan_model, tmp_path):
    home, model_id = home
    pattern = next(p for (p,) in rows(home, "SELECT path FROM videos") if p.endswith("pattern.mp4"))
    shutil.move(pattern, tmp_path / "away.mp4")
    try:
        summary = embed_library(stride=8)
    finally:
        shutil.move(tmp_path / "away.mp4", pattern)
    assert summary["failed"] == 1
    assert rows(home, "SELECT status, error_kind FROM embedded_videos WHERE path = ?", [pattern]) == [("failed", "not_found")]

    pan = next(vid for vid, p in rows(home, "SELECT video_id, path FROM videos") if p.endswith("pan_a.mp4"))
    with pytest.raises(ValueError, match="unknown video"):
        search(video="nonexistent", at_s=1.0)
    with pytest.raises(ValueError, match="outside the video"):
        search(video=pan, at_s=99.0)
    for k in (0, 5000):
        with pytest.raises(ValueError, match="k must be"):
            search(video=pan, at_s=1.0, k=k)
    with pytest.raises(ValueError, match="exactly one query"):
        search(video=pan, at_s=1.0, vector_id=3)
    assert embed_library(stride=8, retry_failed=True)["embedded"] == 1
    hits = search(clip=pattern, k=3)  # a clip file embedded on the fly finds its own windows first
    assert hits[0].path == pattern

    other = register(home, pan_model.__class__(pan_model.config), "untrained")  # the latest model now
    with pytest.raises(FileNotFoundError, match="embed-library"):
        search(video=pan, at_s=1.0)
    Path(vector_index.index_dir(home, other)).mkdir(parents=True)
    shutil.copy(Path(vector_index.index_dir(home, model_id)) / "index.faiss", Path(vector_index.index_dir(home, other)))
    shutil.copy(Path(vector_index.index_dir(home, model_id)) / "manifest.json", Path(vector_index.index_dir(home, other)))
    with pytest.raises(ValueError, match="built by model"):
        search(video=pan, at_s=1.0)


def test_search_cli_prints_hits_and_writes_parquet_that_joins_with_the_score_tables(home, tmp_path):
    import subprocess
    import sys

    home, model_id = home
    embed_library(stride=8)
    pan = next(vid for vid, p in rows(home, "SELECT video_id, path FROM videos") if p.endswith("pan_a.mp4"))
    out = tmp_path / "hits.parquet"
    run = subprocess.run([sys.executable, "-m", "flows.cli", "search", "--video", pan[:8], "--at", "1.0", "-k", "3",
                          "--across-videos", "--json", "--parquet", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    hits = [json.loads(line) for line in run.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(h["video_id"] != pan for h in hits)
    assert set(hits[0]) == {"rank", "vector_id", "video_id", "path", "start_s", "end_s", "similarity", "speediness"}
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    joined = con.execute(f"SELECT h.rank, v.duration_s FROM '{out}' h JOIN videos v USING (video_id) ORDER BY h.rank").fetchall()
    con.close()
    assert [r for r, _ in joined] == [1, 2, 3]

    bad = subprocess.run([sys.executable, "-m", "flows.cli", "search", "--video", pan, "--at", "1.0", "-k", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "k must be between 1 and" in bad.stderr


def test_an_ivf_index_saves_loads_with_its_nprobe_and_finds_what_exact_search_finds(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 32))
    vectors = (centres[rng.integers(0, 40, 6000)] + 0.5 * rng.standard_normal((6000, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 6100)
    index = vector_index.build_index(vectors, ids, "ivf")
    assert vector_index.index_type(index) == "ivf" and index.ntotal == 6000
    vector_index.save_index(tmp_path, index, "model-x")
    loaded, manifest = vector_index.load_index(tmp_path, "model-x")
    assert manifest["index_type"] == "ivf" and faiss.extract_index_ivf(loaded).nprobe == vector_index.IVF_NPROBE
    _, exact = vector_index.build_index(vectors, ids, "flat").search(vectors[:50], 10)
    _, approx = loaded.search(vectors[:50], 10)
    assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]) >= 0.95
    with pytest.raises(ValueError, match="built by model"):
        vector_index.load_index(tmp_path, "model-y")


def test_a_batch_that_dies_is_left_unembedded_for_the_next_run(home, monkeypatch):
    """A task that fails as a whole (a lost worker, not a bad file) records nothing, so the re-run embeds its videos."""
    from tasks import embed as embed_tasks

    home, _ = home
    real_embed_video = embed_tasks.embed_video

    def dies_on_pattern(video, *args, **kwargs):
        if video.path.endswith("pattern.mp4"):
            raise RuntimeError("worker lost (simulated)")
        return real_embed_video(video, *args, **kwargs)

    monkeypatch.setattr(embed_tasks, "embed_video", dies_on_pattern)
    first = embed_library(stride=8)
    assert (first["embedded"] + first["unfinished"], first["failed"]) == (2, 0) and first["unfinished"] >= 1
    assert rows(home, "SELECT count(*) FROM embedded_videos e JOIN videos v USING (video_id) "
                      "WHERE v.path LIKE '%pattern.mp4'")[0][0] == 0
    monkeypatch.setattr(embed_tasks, "embed_video", real_embed_video)
    assert embed_library(stride=8)["embedded"] == first["unfinished"]
    vectors = rows(home, "SELECT count(*), count(DISTINCT vector_id) FROM embeddings")[0]
    index = faiss.read_index(str(Path(vector_index.index_dir(home, rows(home, "SELECT model_id FROM models")[0][0]))
                                 / "index.faiss"))
    assert vectors[0] == vectors[1] == index.ntotal > 0, "every vector once, in the catalog and the index alike"
