"""Atomic writes when two writers target the same file at once (two score runs plotting one video)."""

from __future__ import annotations

import numpy as np
import pytest

from speednet.ffmpeg import VideoWriter
from speednet.media import VideoDecoder, probe_container
from storage.atomic import PARTIAL_GLOB, atomic_write


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
