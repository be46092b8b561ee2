"""Adaptive speedup: the optimal curve's maths on known V(t), and renders of real encoded files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from _pan import write_pan_video
from conftest import ffmpeg, make_video
from speednet import speedup
from speednet.ffmpeg import ffmpeg_exe
from speednet.media import VideoDecoder, probe_container
from speednet.render import RenderConfig, plan_frames, render, tempo_commands, uniform_plan
from speednet.speedup import SpeedupConfig, optimal_speedup, output_duration_s
from tasks.render import RenderSettings, StoredScores, speedup_video

SPEEDS = 1.25 ** np.arange(11)  # 1 … 9.3x, as scoring's default levels
FPS = 25.0


def p_natural_for(v: np.ndarray, speeds: np.ndarray = SPEEDS) -> np.ndarray:
    """P_i(t) that a model with speediness ``v`` would give: sure above and below, unsure near V (ρ matters)."""
    margin = np.log(np.maximum(v, 0.5))[None] - np.log(speeds)[:, None]
    return (1 / (1 + np.exp(-8 * margin - 1))).astype(np.float32)


def varied_v(n: int = 1500, seed: int = 0) -> np.ndarray:
    """A minute of footage: natural stretches, slow motion (V ≈ 2–5), and a sped-up stretch (V = 0)."""
    rng = np.random.default_rng(seed)
    v = np.repeat(rng.choice([1.0, 1.25, 2.0, 3.0, 5.0], size=n // 75), 75)[:n]
    v[300:400] = 0.0
    return v


@pytest.mark.parametrize("rate", [1.0, 1.5, 2.0, 3.0, 6.0, 10.0])
def test_output_lasts_duration_over_rate_within_1_percent(rate):
    v = varied_v()
    curve = optimal_speedup(p_natural_for(v), SPEEDS, FPS, SpeedupConfig(rate=rate))
    target = len(v) / FPS / rate
    assert curve.output_duration_s == pytest.approx(target, rel=0.01)
    assert curve.achieved_rate == pytest.approx(rate, rel=1e-6)  # the final correction is exact
    n_out = len(plan_frames(curve.speed, FPS, FPS))
    assert n_out / FPS == pytest.approx(target, abs=0.5 / FPS)  # the file: a whole number of frames
    assert output_duration_s(speedup.uniform_speedup(len(v), rate), FPS) == pytest.approx(target, rel=1e-12)


def test_the_curve_never_slows_down_stays_smooth_and_is_faster_where_v_is_higher():
    v = np.r_[np.full(250, 1.0), np.full(250, 4.0), np.full(250, 0.0), np.full(250, 2.0)]
    curve = optimal_speedup(p_natural_for(v), SPEEDS, FPS, SpeedupConfig(rate=2.5, alpha=0.25))
    s = curve.speed
    assert s.min() >= 1.0 and s.max() <= 10.0
    assert np.abs(np.diff(s)).max() < 0.05 * 3.0, "a 3x jump in V is spread over many frames"
    natural, slow, fast, slowish = (s[i * 250 + 60:(i + 1) * 250 - 60].mean() for i in range(4))
    assert slow > slowish > natural, (natural, slow, slowish)
    assert fast == pytest.approx(natural, rel=1e-3), "V = 0 (already sped up) asks for 1x, like natural footage"


def test_alpha_trades_following_v_for_smoothness():
    v = np.r_[np.full(200, 1.25), np.full(200, 3.0)]
    curves = [optimal_speedup(p_natural_for(v), SPEEDS, FPS, SpeedupConfig(rate=2.0, alpha=a)).speed for a in (0.01, 1.0)]
    assert np.abs(np.diff(curves[1])).max() < np.abs(np.diff(curves[0])).max() / 3


def test_the_sparse_solution_is_the_exact_minimiser_of_the_quadratic_energy():
    rng = np.random.default_rng(1)
    n, alpha, beta, rate = 120, 0.04, 2.0, 3.0
    v = rng.uniform(1, 6, n)
    lam = alpha * FPS ** 2
    d = np.diff(np.eye(n), axis=0)
    dense = np.linalg.solve(np.eye(n) + lam * d.T @ d + beta / n * np.ones((n, n)), v + beta * rate)
    sparse = speedup.solve_speed(v, rate, beta, speedup.SmoothingSolver(n, alpha, FPS))
    np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-10)


def test_rho_is_searched_and_the_chosen_one_reported():
    v = varied_v()
    curve = optimal_speedup(p_natural_for(v), SPEEDS, FPS, SpeedupConfig(rate=2.0))
    assert curve.rho in speedup.RHO_GRID
    np.testing.assert_array_equal(curve.speediness, speedup.speediness(p_natural_for(v), SPEEDS, curve.rho))


@pytest.mark.parametrize("kwargs, message", [
    (dict(rate=0.5), "rate (R_o) must be >= 1"),
    (dict(rate=12.0), "above s_max"),
    (dict(rate=2.0, alpha=-1.0), "alpha and beta must be >= 0"),
    (dict(rate=2.0, rhos=(0.0, 0.5)), "must be in (0, 1)"),
])
def test_bad_parameters_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SpeedupConfig(**kwargs)


def test_scores_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="at least one frame"):
        optimal_speedup(np.zeros((11, 0)), SPEEDS, FPS, SpeedupConfig())
    with pytest.raises(ValueError, match="for 11 speeds"):
        optimal_speedup(np.zeros((3, 10)), SPEEDS, FPS, SpeedupConfig())


def test_a_uniform_curve_takes_every_rth_frame_and_the_baseline_matches_its_length():
    plan = plan_frames(np.full(100, 2.0), FPS, FPS)
    assert plan.lo.tolist() == list(range(1, 100, 2))
    baseline = uniform_plan(100, 50, FPS, FPS)
    assert baseline.lo.tolist() == plan.lo.tolist() and baseline.speed[0] == pytest.approx(2.0)
    blended = plan_frames(np.full(100, 2.0), FPS, FPS, blend=True)
    assert np.all(blended.hi - blended.lo == 1) and np.allclose(blended.weight, 0.5), "halfway between two frames"
    assert len(plan_frames(np.full(100, 2.0), FPS, 50.0)) == 100, "a higher output fps gives more frames"


def test_audio_tempo_segments_last_as_long_as_the_video():
    s = np.r_[np.full(100, 1.3), np.linspace(1.3, 4.0, 100), np.full(100, 4.0)]
    commands = tempo_commands(s, FPS)
    starts = [t for t, _ in commands] + [len(s) / FPS]
    audio_s = sum((b - a) / tempo for (a, tempo), b in zip(commands, starts[1:]))
    assert audio_s == pytest.approx(output_duration_s(s, FPS), rel=1e-3)
    assert len(commands) < len(s) / FPS / 0.5 + 1, "equal neighbours merge"


# ------------------------------------------------------------------ real files
def decode_all(path: Path) -> np.ndarray:
    decoder = VideoDecoder(path, probe_container(path))
    return decoder.decode(np.arange(decoder.frame_count))


def nearest_source(output: np.ndarray, source: np.ndarray) -> np.ndarray:
    """For each output frame, the source frame it looks most like."""
    diff = output[:, None].astype(np.float32) - source[None].astype(np.float32)
    return np.argmin(np.mean(diff ** 2, axis=(2, 3, 4)), axis=1)


def scores_for(v: np.ndarray, speeds: np.ndarray = SPEEDS[:5]) -> StoredScores:
    return StoredScores(speeds, p_natural_for(v, speeds), FPS)


def test_a_render_shows_the_planned_source_frames_and_decodes_with_the_expected_count(tmp_path):
    source = write_pan_video(tmp_path / "pan.mp4", speeds=[1.0, 0.5], frames_each=60)
    v = np.r_[np.full(60, 1.25), np.full(60, 2.44)]
    out = tmp_path / "out" / "fast.mp4"
    rendered = speedup_video(str(source), scores_for(v), RenderSettings(SpeedupConfig(rate=2.0)), out,
                             plot_path=tmp_path / "curve.png")

    expected = int(round(rendered.curve.output_duration_s * FPS))
    assert rendered.frames_written == expected == 60
    frames = decode_all(out)
    assert len(frames) == expected and frames.shape[1:] == (64, 96, 3)
    plan = plan_frames(rendered.curve.speed, FPS, FPS)
    assert nearest_source(frames, decode_all(source)).tolist() == plan.lo.tolist()
    assert [p.name for p in out.parent.iterdir()] == ["fast.mp4"], "no temp files left"
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_side_by_side_holds_adaptive_and_uniform_halves_of_the_same_duration(tmp_path):
    source = write_pan_video(tmp_path / "pan.mp4", speeds=[1.0, 0.5], frames_each=50)
    v = np.r_[np.full(50, 1.0), np.full(50, 2.44)]
    rendered = speedup_video(str(source), scores_for(v), RenderSettings(SpeedupConfig(rate=2.0), side_by_side=True),
                             tmp_path / "fast.mp4")
    both = decode_all(Path(rendered.side_by_side_path))
    assert both.shape == (50, 64, 192, 3)
    src = decode_all(source)
    lower = slice(20, 64)  # below the speed label
    adaptive = nearest_source(both[:, lower, :96], src[:, lower]).tolist()
    uniform = nearest_source(both[:, lower, 96:], src[:, lower]).tolist()
    assert adaptive == plan_frames(rendered.curve.speed, FPS, FPS).lo.tolist()
    assert uniform == uniform_plan(100, 50, FPS, FPS).lo.tolist()
    assert adaptive != uniform
    assert both[:, :12, :40].std() > 30, "a speed label is drawn over each half"


def test_a_rotated_source_keeps_its_orientation(tmp_path):
    stored = make_video(tmp_path / "stored.mp4", seconds=2.0, size="160x96", source="mandelbrot")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(rotated))
    rendered = speedup_video(str(rotated), scores_for(np.full(50, 1.56)), RenderSettings(SpeedupConfig(rate=2.0)),
                             tmp_path / "fast.mp4")
    info = probe_container(rendered.output_path)
    assert (info.width, info.height, info.rotation_deg) == (96, 160, 0)
    frames, upright = decode_all(Path(rendered.output_path)), decode_all(rotated)
    plan = plan_frames(rendered.curve.speed, FPS, FPS)
    assert np.abs(frames.astype(int) - upright[plan.lo].astype(int)).mean() < 4


def _audio_seconds_and_switch(path: Path) -> tuple[float, float]:
    """Length of the audio track, and when its tone first rises from 440 Hz to 880 Hz (zero-crossing rate)."""
    run = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True)
    audio = np.frombuffer(run.stdout, np.float32)
    window = 800  # 50 ms
    crossings = [np.count_nonzero(np.diff(np.signbit(audio[i:i + window]))) * 20
                 for i in range(0, len(audio) - window, window)]
    return len(audio) / 16000, (np.argmax(np.array(crossings) > 1320) + 0.5) * window / 16000


def test_audio_is_kept_and_time_stretched_to_follow_the_curve(tmp_path):
    source = tmp_path / "tone.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-f", "lavfi", "-i",
           "aevalsrc=if(lt(t\\,2)\\,sin(2*PI*440*t)\\,sin(2*PI*880*t)):s=44100", "-t", "4",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(source))
    v = np.r_[np.full(50, 1.25), np.full(50, 2.44)]
    settings = RenderSettings(SpeedupConfig(rate=2.0, alpha=0.04), audio=True)
    rendered = speedup_video(str(source), scores_for(v), settings, tmp_path / "fast.mp4")

    assert rendered.audio and probe_container(rendered.output_path).has_audio
    audio_s, switch_s = _audio_seconds_and_switch(Path(rendered.output_path))
    assert audio_s == pytest.approx(rendered.curve.output_duration_s, abs=0.05)
    expected_switch = output_duration_s(rendered.curve.speed[:50], FPS)  # τ(2 s): where source second 2 plays
    assert abs(expected_switch - 2.0 / 2.0) > 0.1, "the test needs a curve unlike uniform 2x"
    assert switch_s == pytest.approx(expected_switch, abs=0.08)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.mp4", "tone.mp4"]

    silent = speedup_video(str(source), scores_for(v), RenderSettings(SpeedupConfig(rate=2.0)), tmp_path / "silent.mp4")
    assert not silent.audio and not probe_container(silent.output_path).has_audio


def test_an_hour_long_source_streams_through_in_bounded_chunks(tmp_path):
    fps, n_frames = 30.0, 108_000  # one hour
    curve = optimal_speedup(p_natural_for(varied_v(n_frames)), SPEEDS, fps, SpeedupConfig(rate=8.0))
    plan = plan_frames(curve.speed, fps, fps)
    requests = []

    def read(indices: np.ndarray) -> np.ndarray:
        requests.append(indices)
        return np.full((len(indices), 16, 16, 3), 128, np.uint8)

    written = render(read, [plan], (16, 16), tmp_path / "hour.mp4", fps, RenderConfig(memory_mb=0.1))
    assert written == len(plan) == round(3600 / 8.0 * fps)
    frame_bytes = 16 * 16 * 3
    assert max(len(r) for r in requests) * frame_bytes <= 0.1 * 2 ** 20 / 2, "at most half the budget per chunk"
    firsts = [r[0] for r in requests]
    assert firsts == sorted(firsts) and np.all(np.diff(np.concatenate(requests)) > 0), "each source frame read once, in order"
