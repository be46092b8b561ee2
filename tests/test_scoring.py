"""Speediness scoring: the maths on known inputs, and a trained model on real encoded videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _pan import write_pan_video
from speednet import scoring
from speednet.model import build_speednet
from speednet.scoring import ScoreConfig
from storage import catalog
from storage.scores import frame_score_table, write_scored
from tasks.score import per_second_table, score_file


def test_a_version_takes_every_speed_th_source_frame():
    assert scoring.version_indices(0, 5, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert scoring.version_indices(0, 5, 2.0).tolist() == [0, 2, 4, 6, 8]
    assert scoring.version_indices(4, 4, 1.25).tolist() == [5, 6, 7, 8]
    assert scoring.version_frames(100, 1.25) == 80
    assert scoring.version_frames(101, 2.0) == 51
    last = scoring.version_indices(scoring.version_frames(1000, 1.25 ** 7) - 1, 1, 1.25 ** 7)[0]
    assert last < 1000 <= last + 1.25 ** 7


def test_dense_stretches_cover_exactly_the_windows_sliding_mode_runs():
    n, T, ts = 700, 16, 4
    sliding = scoring.plan_jobs(n, T, ScoreConfig(levels=3, stride=ts), ts)
    dense = scoring.plan_jobs(n, T, ScoreConfig(levels=3, mode="dense", dense_frames=64), ts)
    groups = [(j.last // 512, j.level) for j in sliding]  # chunk by chunk, lowest speed first within one
    assert groups == sorted(groups)
    for level in range(4):
        windows = {j.start for j in sliding if j.level == level}
        covered = set()
        for job in (j for j in dense if j.level == level):
            covered |= set(range(job.start, job.start + job.length - T + 1, ts))
        assert covered == windows, level


def test_speediness_is_the_largest_speed_up_to_which_every_speed_is_judged_natural():
    speeds = np.array([1.0, 1.25, 1.5625, 1.953125, 2.44140625])
    p = np.array([[0.9, 0.9, 0.2, 0.9, 0.3],
                  [0.8, 0.9, 0.1, 0.9, 0.9],
                  [0.4, 0.8, 0.1, 0.9, 0.9],
                  [0.3, 0.7, 0.1, 0.2, 0.9],
                  [0.2, 0.1, 0.1, 0.9, 0.9]])  # a natural answer above an unnatural speed does not count
    assert scoring.speediness(p, speeds, rho=0.5).tolist() == [1.25, 1.953125, 0.0, 1.5625, 0.0]
    assert scoring.speediness(p, speeds, rho=0.05).tolist() == [2.44140625] * 5


def test_segments_split_v_into_slow_motion_natural_and_sped_up_runs():
    fps = 10.0
    # 1.95x is the grid's speed nearest 2x: slow motion; 1.56x is not
    v = np.r_[np.full(30, 1.5625), np.full(20, 1.953125), np.full(15, 0.0), 1.0, np.full(14, 1.0)]
    v[5] = 3.0  # a one-frame blip is smoothed away
    found = list(scoring.segments(v, np.linspace(1, 0, len(v)), fps))
    assert [(s["kind"], s["start_s"], s["end_s"]) for s in found] == [
        ("natural", 0.0, 3.0), ("slow_motion", 3.0, 5.0), ("sped_up", 5.0, 6.5), ("natural", 6.5, 8.0)]
    assert found[1]["mean_speediness"] == pytest.approx(1.953125)
    summary = scoring.summary(v, fps)
    assert summary["frac_slow_motion"] == pytest.approx(21 / 80) and summary["frac_sped_up"] == pytest.approx(15 / 80)


def test_frames_are_read_once_in_bounded_chunks_however_long_the_video():
    torch.manual_seed(0)
    model = build_speednet(preset="cpu").eval()
    reads = []

    def read(start, stop):
        reads.append((start, stop))
        return np.random.default_rng(start).integers(0, 255, (stop - start, 64, 64, 3), dtype=np.uint8)

    config = ScoreConfig(levels=3, stride=160, chunk_frames=200)
    peaks = {}
    for n in (1500, 4500):
        reads.clear()
        result = scoring.score_frames(model, read, n, config)
        assert reads[0][0] == 0 and reads[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(reads, reads[1:])), "every frame is decoded exactly once, in order"
        assert result.p_natural.shape == (4, n) and np.isfinite(result.p_natural).all()
        peaks[n] = result.peak_buffer_frames
    longest_span = int(np.ceil(15 * config.speeds[-1])) + 1
    assert max(peaks.values()) <= config.chunk_frames + longest_span, peaks  # the bound does not grow with n


def test_a_video_natural_then_2x_steps_down_in_speediness(pan_model, tmp_path):
    """First half pans at the natural speed, second half at twice it: V(t) must drop, not rise."""
    video = write_pan_video(tmp_path / "half2x.mp4", speeds=[1.0, 2.0], frames_each=80)
    result = score_file(str(video), pan_model, ScoreConfig(levels=6))
    assert result.frames == 160 and result.fps == 25.0
    v = result.scores.speediness(0.5)
    first, second = v[10:70], v[90:150]  # away from the switch, where windows straddle it
    assert np.median(first) >= 1.0, "natural footage must look natural at 1x"
    assert np.median(second) < 1.0, "footage at 2x must look sped up at 1x"
    p1x = result.scores.p_natural[0]
    assert p1x[10:70].mean() > p1x[90:150].mean() + 0.4

    table = per_second_table(result, 0.5)
    assert len(table) == 7 and table[0]["speediness"] > table[-1]["speediness"]


def test_dense_and_budget_modes_agree_with_sliding_windows(pan_model, tmp_path):
    video = str(write_pan_video(tmp_path / "mixed.mp4", speeds=[1.0, 0.5, 2.0], frames_each=64, seed=3))
    exact = score_file(video, pan_model, ScoreConfig(levels=5))
    dense = score_file(video, pan_model, ScoreConfig(levels=5, mode="dense"))
    budget = score_file(video, pan_model, ScoreConfig(levels=5, budget=True))
    sparse = score_file(video, pan_model, ScoreConfig(levels=5, mode="dense", stride=8))
    assert sparse.scores.windows_run < dense.scores.windows_run  # dense honours the stride (rounded to 4 frames)
    assert np.allclose(np.diff(sparse.scores.window_p[0][0]), 8)  # at 1x, window centres 8 frames apart
    with pytest.raises(ValueError, match="sliding"):
        ScoreConfig(mode="dense", budget=True)
    v_exact = exact.scores.speediness(0.5)
    corr = np.corrcoef(exact.scores.p_natural.ravel(), dense.scores.p_natural.ravel())[0, 1]
    assert corr > 0.8, corr
    assert np.corrcoef(v_exact, dense.scores.speediness(0.5))[0, 1] > 0.7
    assert budget.scores.windows_run < exact.scores.windows_run and budget.scores.windows_skipped > 0
    assert np.mean(budget.scores.speediness(0.5) == v_exact) > 0.8


@pytest.mark.parametrize("kind", ["truncated_no_index", "zero_bytes", "text", "audio_only", "still_image", "one_frame"])
def test_files_that_cannot_be_scored_raise_their_typed_error(media, kind):
    from conftest import EXPECTED_KIND
    from speednet.errors import MediaError

    torch.manual_seed(0)
    with pytest.raises(MediaError) as raised:
        score_file(str(media[kind]), build_speednet(preset="cpu").eval(), ScoreConfig(levels=1))
    assert raised.value.kind == EXPECTED_KIND[kind] and str(media[kind]) in str(raised.value)


def test_the_frame_speediness_view_gives_the_same_v_as_the_scorer(tmp_path):
    speeds = np.array([1.0, 1.25, 1.5625, 1.953125, 2.44140625], dtype=np.float32)
    p = np.array([[0.9, 0.9, 0.2, 0.9, 0.3, 0.9],
                  [0.8, 0.9, 0.1, 0.9, 0.9, 0.9],
                  [0.4, 0.8, 0.1, 0.9, 0.9, 0.9],
                  [0.3, 0.7, 0.1, 0.2, 0.9, 0.9],
                  [0.2, 0.1, 0.1, 0.9, 0.9, 0.9]], dtype=np.float32)
    path = tmp_path / "catalog.duckdb"
    write_scored(path, {"video_id": "v", "model_id": "m", "rho": 0.5}, frame_score_table("v", "m", speeds, p, fps=10.0), [])
    con = catalog.connect(path, read_only=True)
    try:
        from_view = [v for _, v in con.execute("SELECT frame, speediness FROM frame_speediness ORDER BY frame").fetchall()]
    finally:
        con.close()
    np.testing.assert_allclose(from_view, scoring.speediness(p, speeds, rho=0.5), rtol=1e-6)
    assert from_view[3] == pytest.approx(1.5625) and from_view[4] == 0.0  # natural above unnatural does not count
