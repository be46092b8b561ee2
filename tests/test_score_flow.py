"""The score-library flow against the real DuckDB catalog: rows, views, failures, re-runs, kills, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _pan import train_pan_model, write_pan_video
from _catalog import register, rows
from conftest import make_video
from flows.ingest import ingest_library
from flows.score import score_library
from storage import catalog, scores

LEVELS = 4  # speeds 1 … 2.44x: reaches slow motion (≥ 1.95x), quick on CPU






@pytest.fixture(scope="module")
def scored_home(tmp_path_factory, pan_model) -> tuple[Path, Path, str]:
    """A data home with four ingested videos and a registered pan model (copy it before changing it)."""
    root = tmp_path_factory.mktemp("score")
    library, home = root / "library", root / "home"
    write_pan_video(library / "natural.mp4", speeds=[1.0], frames_each=100, seed=1)
    write_pan_video(library / "half2x.mp4", speeds=[1.0, 2.0], frames_each=60, seed=2)
    write_pan_video(library / "slowmo.mp4", speeds=[0.5], frames_each=100, seed=3)
    make_video(library / "pattern.mp4", seconds=3.0)
    summary = ingest_library(library=str(library), data_home=str(home), short_side_px=64, clip_frames=16)
    assert summary["ingested"] == 4, summary
    model_id = register(home, pan_model)
    return home, library, model_id




def test_every_video_gets_frame_rows_a_summary_segments_and_maps_and_the_views_answer(home_copy):
    home, library, model_id = home_copy
    summary = score_library(levels=LEVELS, plots=True, maps=2)

    assert summary == {**summary, "model_id": model_id, "scored": 4, "failed": 0}
    frames = dict(rows(home, "SELECT path, frame_count FROM ingested_videos"))
    per_video = rows(home, "SELECT v.path, count(*), count(DISTINCT (f.frame, f.speed)) FROM frame_scores f "
                           "JOIN videos v USING (video_id) GROUP BY v.path")
    assert {p: (n, d) for p, n, d in per_video} == {p: ((LEVELS + 1) * f, (LEVELS + 1) * f) for p, f in frames.items()}
    by_name = {Path(p).name: (mean, slow, fast) for p, mean, slow, fast in rows(
        home, "SELECT path, mean_speediness, frac_slow_motion, frac_sped_up FROM video_speediness")}
    assert by_name["slowmo.mp4"][0] > by_name["natural.mp4"][0] > by_name["half2x.mp4"][0]
    assert by_name["slowmo.mp4"][1] > 0.5, "footage at half speed still looks natural at ~2x"
    assert by_name["half2x.mp4"][2] > 0.3, "its 2x half looks sped up even at 1x"

    kinds = rows(home, "SELECT kind, sum(end_s - start_s) FROM segments s JOIN videos v USING (video_id) "
                       "WHERE v.path LIKE '%slowmo.mp4' GROUP BY kind ORDER BY 2 DESC")
    assert kinds[0][0] == "slow_motion"
    assert rows(home, "SELECT count(*) FROM slow_motion_segments WHERE duration_s > 2")[0][0] >= 1
    ranked = [Path(p).name for (p,) in rows(home, "SELECT path FROM speedupable_videos")]
    assert ranked.index("slowmo.mp4") < ranked.index("natural.mp4") < ranked.index("half2x.mp4")
    assert rows(home, "SELECT model_id, videos FROM model_comparison") == [(model_id, 4)]
    v_from_view = rows(home, "SELECT avg(speediness) FROM frame_speediness f JOIN videos v USING (video_id) "
                             "WHERE v.path LIKE '%natural.mp4'")[0][0]
    assert v_from_view == pytest.approx(by_name["natural.mp4"][0], abs=1e-6)
    plots = sorted((home / "plots" / "speediness").glob("*.png"))
    assert len(plots) == 4 and all(p.stat().st_size > 10_000 for p in plots)
    assert sorted(p.name.split("-")[0] for p in plots) == ["half2x", "natural", "pattern", "slowmo"]  # named after sources
    maps = rows(home, "SELECT v.path, m.at_s, m.speed, m.p_sped_up, m.png_path, m.mp4_path FROM speediness_maps m "
                      "JOIN videos v USING (video_id) WHERE m.model_id = ? ORDER BY v.path, m.at_s", [model_id])
    windows: dict[str, list] = {}
    for path, at_s, speed, p, png, mp4 in maps:
        windows.setdefault(Path(path).name, []).append((at_s, p))
        assert speed == 1.0 and Path(png).stat().st_size > 1000 and Path(mp4).stat().st_size > 1000
    assert sorted(windows) == ["half2x.mp4", "natural.mp4", "pattern.mp4", "slowmo.mp4"]
    assert all(len(found) == 2 for found in windows.values())
    # half2x.mp4 pans at 2x from frame 60 (2.4 s): the maps show its most sped-up windows there
    assert all(at_s >= 2.4 - 0.2 and p > 0.5 for at_s, p in windows["half2x.mp4"]), windows["half2x.mp4"]
    assert min(p for _, p in windows["half2x.mp4"]) > max(p for _, p in windows["slowmo.mp4"])


def test_a_rerun_scores_nothing_and_a_new_model_scores_beside_the_old_rows(home_copy):
    home, _, old_model = home_copy
    score_library(levels=LEVELS)
    before = rows(home, "SELECT count(*) FROM frame_scores")[0][0]

    assert score_library(levels=LEVELS)["scored"] == 0
    assert rows(home, "SELECT count(*) FROM frame_scores")[0][0] == before

    new_model = register(home, train_pan_model(steps=2, seed=1), name="other")
    assert score_library(levels=LEVELS)["scored"] == 4  # the latest model by default
    assert dict(rows(home, "SELECT model_id, count(*) FROM video_speediness GROUP BY 1")) == {old_model: 4, new_model: 4}
    assert rows(home, "SELECT count(*) FROM frame_scores")[0][0] == 2 * before
    assert score_library(model=old_model[:10], levels=LEVELS)["scored"] == 0


def test_videos_that_cannot_be_scored_are_recorded_and_the_run_goes_on(home_copy, tmp_path):
    home, library, model_id = home_copy
    paths = dict(rows(home, "SELECT video_id, path FROM ingested_videos"))
    moved = tmp_path / "moved"
    moved.mkdir()
    gone = next(p for p in paths.values() if p.endswith("natural.mp4"))
    changed = next(p for p in paths.values() if p.endswith("pattern.mp4"))
    shutil.move(gone, moved / "natural.mp4")
    original = Path(changed).read_bytes()
    try:
        Path(changed).write_bytes(original[: len(original) // 2])
        summary = score_library(levels=LEVELS)
    finally:
        shutil.move(moved / "natural.mp4", gone)
        Path(changed).write_bytes(original)

    assert (summary["scored"], summary["failed"]) == (2, 2)
    failures = {Path(p).name: (kind, error) for p, kind, error in rows(home, "SELECT path, error_kind, error FROM score_failures")}
    assert failures["natural.mp4"][0] == "not_found" and "ingest" in failures["natural.mp4"][1]
    assert "changed since it was ingested" in failures["pattern.mp4"][1]
    assert rows(home, "SELECT count(*) FROM frame_scores WHERE video_id IN (SELECT video_id FROM score_failures)")[0][0] == 0

    assert score_library(levels=LEVELS)["scored"] == 0  # failures are not retried by default...
    assert score_library(levels=LEVELS, retry_failed=True)["scored"] == 2  # ...but on request
    assert rows(home, "SELECT count(*) FROM score_failures")[0][0] == 0


def test_a_failed_write_leaves_none_of_the_videos_rows(home_copy, monkeypatch):
    home, _, model_id = home_copy
    score_library(levels=LEVELS)
    video_id, before = rows(home, "SELECT video_id, count(*) FROM frame_scores GROUP BY 1 LIMIT 1")[0]
    frame_rows = scores.frame_score_table(video_id, model_id, [1.0], [[0.5] * 7], 25.0)
    real_insert = catalog.insert_rows

    def failing_insert(con, table, new_rows, replace_by=None):
        if table == "video_speediness":
            raise OSError("disk full (simulated) after the frame rows were written")
        real_insert(con, table, new_rows, replace_by)

    monkeypatch.setattr(catalog, "insert_rows", failing_insert)
    with pytest.raises(OSError):
        scores.write_scored(home / "catalog.duckdb", {"video_id": video_id, "model_id": model_id}, frame_rows, [])
    assert rows(home, "SELECT count(*) FROM frame_scores WHERE video_id = ?", [video_id])[0][0] == before


def test_a_part_staged_before_a_kill_is_committed_without_scoring_again(home_copy, monkeypatch):
    """A worker that finished a video before the flow died leaves a part; the next run commits it as it is."""
    from speednet.scoring import ScoreConfig
    from storage import paths
    from tasks import score as score_tasks

    home, _, model_id = home_copy
    catalog_path = str(home / "catalog.duckdb")
    model_ref = score_tasks.resolve_model(catalog_path, model_id)
    video = score_tasks.select_unscored.fn(catalog_path, model_id)[0]
    staged = score_tasks.score_one(video, model_ref, ScoreConfig(levels=LEVELS), str(paths.staged_scores_dir(home)))
    assert Path(staged["part"]).is_file() and not rows(home, "SELECT count(*) FROM video_speediness")[0][0]

    def no_model(path):
        raise RuntimeError("scoring again (simulated: the model cannot load)")

    monkeypatch.setattr(score_tasks, "load_model", no_model)
    other = next(v for v in score_tasks.select_unscored.fn(catalog_path, model_id) if v.video_id != video.video_id)
    summary = score_library(levels=LEVELS, video_ids=[video.video_id, other.video_id])
    assert (summary["scored"], summary["failed"]) == (1, 1)
    assert rows(home, "SELECT video_id FROM video_speediness WHERE status = 'scored'") == [(video.video_id,)]
    assert rows(home, "SELECT count(*) FROM frame_scores")[0][0] == (LEVELS + 1) * video.frame_count
    assert not Path(staged["part"]).exists()


def test_a_part_committed_by_a_concurrent_run_is_not_committed_twice(home_copy, tmp_path):
    """Two runs scoring one video stage the same part; the first commits and deletes it, the second skips it."""
    home, _, model_id = home_copy
    video_id, frames = rows(home, "SELECT video_id, frame_count FROM ingested_videos LIMIT 1")[0]
    summary = {"video_id": video_id, "model_id": model_id, "path": "x.mp4", "score_params": "{}", "fps": 25.0}
    part = scores.write_part(tmp_path / "part.parquet", summary,
                             scores.frame_score_table(video_id, model_id, [1.0], [[0.5] * frames], 25.0), [])
    assert scores.commit_part(home / "catalog.duckdb", part)["video_id"] == video_id
    assert scores.commit_part(home / "catalog.duckdb", part) is None
    assert rows(home, "SELECT count(*) FROM frame_scores WHERE video_id = ?", [video_id])[0][0] == frames


def test_a_batch_that_dies_is_left_unscored_for_the_next_run(home_copy, monkeypatch):
    """A task that fails as a whole (a lost worker, not a bad file) records nothing, so the re-run does its videos."""
    from tasks import score as score_tasks

    home, _, _ = home_copy
    real_score_one = score_tasks.score_one
    two = [vid for vid, path in rows(home, "SELECT video_id, path FROM ingested_videos")
           if path.endswith(("slowmo.mp4", "natural.mp4"))]

    def dies_on_slowmo(video, *args, **kwargs):
        if video.path.endswith("slowmo.mp4"):
            raise RuntimeError("worker lost (simulated)")
        return real_score_one(video, *args, **kwargs)

    monkeypatch.setattr(score_tasks, "score_one", dies_on_slowmo)
    first = score_library(levels=LEVELS, video_ids=two)
    assert (first["scored"] + first["unfinished"], first["failed"]) == (2, 0) and first["unfinished"] >= 1
    assert rows(home, "SELECT count(*) FROM video_speediness v JOIN videos USING (video_id) "
                      "WHERE videos.path LIKE '%slowmo.mp4'")[0][0] == 0
    monkeypatch.setattr(score_tasks, "score_one", real_score_one)
    assert score_library(levels=LEVELS, video_ids=two)["scored"] == first["unfinished"]
    assert rows(home, "SELECT count(*) FROM video_speediness WHERE status = 'scored'")[0][0] == 2


_RUN = """
import sys
from flows.score import score_library
print(score_library(levels=int(sys.argv[1]), plots=True))
"""


def _start(home: Path, prefect_home: Path) -> subprocess.Popen:
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPEEDNET_HOME": str(home), "PREFECT_HOME": str(prefect_home), "SPEEDNET_DECODE_WORKERS": "1",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", _RUN, str(LEVELS)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _consistent(home: Path) -> None:
    """Every video scored exactly once: one summary row, and one frame row per frame and speed."""
    frames = dict(rows(home, "SELECT video_id, frame_count FROM ingested_videos"))
    assert dict(rows(home, "SELECT video_id, count(*) FROM video_speediness WHERE status = 'scored' GROUP BY 1")) == \
        {vid: 1 for vid in frames}
    counted = rows(home, "SELECT video_id, count(*), count(DISTINCT (frame, speed)) FROM frame_scores GROUP BY 1")
    assert {vid: (n, d) for vid, n, d in counted} == {vid: ((LEVELS + 1) * f,) * 2 for vid, f in frames.items()}
    segments = rows(home, "SELECT video_id, min(start_s), sum(end_s - start_s) FROM segments GROUP BY 1")
    fps = dict(rows(home, "SELECT video_id, fps FROM videos"))
    assert all(start == 0 and total == pytest.approx(frames[vid] / fps[vid]) for vid, start, total in segments)


def test_a_killed_run_leaves_whole_videos_and_a_rerun_finishes(home_copy, tmp_path):
    home, _, _ = home_copy
    run = _start(home, tmp_path / "prefect")
    plots = home / "plots" / "speediness"
    deadline = time.monotonic() + 240
    while not list(plots.glob("[!.]*.png")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    done = rows(home, "SELECT count(*) FROM video_speediness")[0][0] if (home / "catalog.duckdb").exists() else 0
    assert done < 4, "the run finished before it was killed; the test proves nothing"

    summary = score_library(levels=LEVELS)
    assert summary["scored"] == 4 - done
    _consistent(home)


def test_two_runs_at_once_leave_a_consistent_catalog(home_copy, tmp_path):
    home, _, _ = home_copy
    runs = [_start(home, tmp_path / f"prefect{i}") for i in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    results = [json.loads(line.replace("'", '"').replace("None", "null")) for out in outputs
               for line in out.splitlines() if line.startswith("{'model_id'")]
    assert sum(r["failed"] for r in results) == 0
    _consistent(home)
