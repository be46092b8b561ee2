"""Speeds mean × real time for any source frame rate: 10 fps footage is not sped up, 60 fps is not slow motion."""

from __future__ import annotations

import numpy as np
import pytest

from _catalog import rows
from _pan import PAN_PX, write_pan_video
from flows.ingest import ingest_library
from speednet.scoring import ScoreConfig
from speednet.timebase import TimeBase
from tasks.score import score_file


@pytest.mark.parametrize("fps, step, upsample", [(25, 1, 1), (30, 1, 1), (20, 1, 1), (60, 2, 1), (50, 2, 1),
                                                 (120, 4, 1), (10, 1, 3), (12, 1, 2), (15, 1, 2), (8, 1, 3)])
def test_the_time_base_brings_a_source_near_the_rate_the_model_learnt(fps, step, upsample):
    timebase = TimeBase.for_fps(fps)
    assert (timebase.step, timebase.upsample) == (step, upsample)
    assert 20 <= timebase.model_fps <= 30


def test_model_frames_map_to_source_frames_and_back():
    slow, fast = TimeBase.for_fps(10), TimeBase.for_fps(60)
    assert slow.model_frames(10) == 28 and fast.model_frames(121) == 61
    assert slow.source_position([0, 3, 4, 27]).tolist() == pytest.approx([0, 1, 4 / 3, 9])
    assert fast.source_position([0, 1, 60]).tolist() == [0, 2, 120]
    curve = np.arange(28, dtype=np.float32)[None]  # one value per model frame, linear in time
    np.testing.assert_allclose(slow.to_source(curve, 10), 3 * np.arange(10)[None])


def test_readers_thin_fast_sources_and_interpolate_slow_ones_keeping_source_frames():
    source = np.stack([np.full((8, 10, 3), 10 * i, np.uint8) for i in range(12)])

    def read(start, stop):
        return source[start:stop]

    thinned = TimeBase.for_fps(60).reader(read)(1, 5)
    assert [int(f[0, 0, 0]) for f in thinned] == [20, 40, 60, 80]
    between = TimeBase.for_fps(10).reader(read)(2, 8)  # model frames 2..7: source 2/3 … 7/3
    assert between.shape == (6, 8, 10, 3)
    assert int(between[1, 0, 0, 0]) == 10 and int(between[4, 0, 0, 0]) == 20  # model frames 3 and 6 are source 1 and 2


def test_a_10fps_pan_at_natural_speed_reads_natural_and_a_60fps_pan_at_2x_reads_sped_up(pan_model, tmp_path):
    """The pan model learnt PAN_PX px per 1/25 s as natural; these files show the same real-time speeds at other rates."""
    cases = {
        "natural_10fps": (10, 25 / 10, "natural"),  # 2.5·PAN_PX px per frame: natural in real time
        "natural_60fps": (60, 25 / 60, "natural"),
        "twice_60fps": (60, 2 * 25 / 60, "sped_up"),  # PAN_PX·0.83 px per frame, but 2x real time
        "twice_25fps": (25, 2.0, "sped_up"),
    }
    for name, (fps, speed, expected) in cases.items():
        video = write_pan_video(tmp_path / f"{name}.mp4", speeds=[speed], frames_each=int(4 * fps), seed=7, fps=fps)
        result = score_file(str(video), pan_model, ScoreConfig(levels=4))
        assert result.frames == int(4 * fps) and result.fps == fps  # scores come back per source frame
        v = result.scores.speediness(0.5)
        v = v[len(v) // 5: -len(v) // 5]  # away from the ends, where windows are few
        if expected == "natural":
            assert 1.0 <= np.median(v) < 2.0, (name, np.median(v))
        else:
            assert np.median(v) < 1.0, (name, np.median(v))
    assert PAN_PX * 25 / 10 > 2 * PAN_PX  # without the time base, the 10 fps file moves more per frame than 2x


def test_ingest_stores_slow_and_fast_sources_at_the_model_rate(tmp_path):
    library = tmp_path / "library"
    write_pan_video(library / "slow.mp4", speeds=[2.5], frames_each=40, seed=1, fps=10)
    write_pan_video(library / "fast.mp4", speeds=[25 / 60], frames_each=240, seed=2, fps=60)
    home = tmp_path / "home"
    assert ingest_library(library=str(library), data_home=str(home), short_side_px=64, clip_frames=48)["ingested"] == 2
    stored = {path.rsplit("/", 1)[-1]: (fps, clip_fps, clips) for path, fps, clip_fps, clips in
              rows(home, "SELECT path, fps, clip_fps, clip_count FROM ingested_videos")}
    assert stored == {"slow.mp4": (10.0, 30.0, 2), "fast.mp4": (60.0, 30.0, 2)}  # 118 and 120 model frames
