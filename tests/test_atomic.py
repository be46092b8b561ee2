"""Atomic writes when two writers target the same file at once (two score runs plotting one video)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import exited_pid, leftover_partial
from speednet.ffmpeg import VideoWriter
from speednet.media import VideoDecoder, probe_container
from storage.atomic import PARTIAL_GLOB, atomic_write, remove_dead_partials


def test_two_overlapping_writers_of_one_file_both_succeed_and_the_last_wins(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_write(target) as first:
        first.write_text("first")
        with atomic_write(target) as second:
            assert second != first
            second.write_text("second")
        assert target.read_text() == "second"
    assert target.read_text() == "first"
    assert list(tmp_path.glob(PARTIAL_GLOB)) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "index.json"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise ValueError("writer died")
    assert target.read_text() == "old"
    assert list(tmp_path.glob(PARTIAL_GLOB)) == []


def test_two_video_writers_of_one_file_at_once_both_finish_with_a_whole_video(tmp_path):
    target = tmp_path / "render.mp4"
    frames = np.zeros((10, 64, 96, 3), np.uint8)
    with VideoWriter(target, fps=10, width=96, height=64) as first, VideoWriter(target, fps=10, width=96, height=64) as second:
        first.write(frames + 200)
        second.write(frames)
    decoded = VideoDecoder(target, probe_container(target), short_side_px=64).decode([0, 9])
    assert decoded.shape == (2, 64, 96, 3) and decoded.mean() > 150  # the last to finish (the outer) wins
    assert list(tmp_path.glob(PARTIAL_GLOB)) == []


def test_a_later_writer_removes_killed_writers_temp_files_and_spares_live_and_foreign_ones(tmp_path):
    target = tmp_path / "part.parquet"
    dead = [leftover_partial(target, exited_pid()), leftover_partial(tmp_path / "other.json", exited_pid())]
    live = leftover_partial(target, os.getpid())
    foreign = leftover_partial(target, exited_pid(), other_machine=True)
    assert all(p.exists() for p in dead)
    with atomic_write(target) as tmp:
        tmp.write_text("whole")
    assert not any(p.exists() for p in dead)
    assert live.exists() and foreign.exists()
    assert target.read_text() == "whole"
    late = leftover_partial(target, exited_pid())
    assert remove_dead_partials(tmp_path) == [late]


def test_a_long_file_name_still_gets_a_temp_name_that_fits(tmp_path):
    target = tmp_path / ("é" * 120 + ".mp4")  # 244 bytes: the old fixed temp name did fit, a unique one must too
    with atomic_write(target) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.suffix == ".mp4"
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert list(tmp_path.glob(PARTIAL_GLOB)) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_but_unreaped_writer_counts_as_gone(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        leftover = leftover_partial(tmp_path / "plot.png", child.pid)
        assert remove_dead_partials(tmp_path) == [leftover]
    finally:
        child.wait()
