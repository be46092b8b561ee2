"""Synthetic physics clips: deterministic, physically right, and described truthfully by their sidecars."""

from __future__ import annotations

import dataclasses
import json

import decord
import numpy as np
import pytest

from speednet.synthetic import physics, render_clip, render_frames, sample_scene, write_synthetic_library
from speednet.synthetic.library import library_scenes
from speednet.synthetic.scenes import (Background, Ball, Lighting, Look, Pendulum, SceneParams, SpeedSegment,
                                       object_positions_m)

G = physics.G_M_PER_S2
TINY = dict(count=2, seed=7, duration_s=(1.0, 1.0), sizes=((128, 72),), fps_choices=(24, 25, 30))
RED = (230.0, 30.0, 30.0)
GREY = (128.0, 128.0, 128.0)


def plain(scene: SceneParams) -> SceneParams:
    """The same scene on a flat grey backdrop with no lighting changes or noise: objects can be measured exactly."""
    return dataclasses.replace(scene, background=Background(kind="flat", colour_a=GREY, floor_colour=(60.0, 60.0, 60.0)),
                               lighting=Lighting())


def decode(path) -> np.ndarray:
    return decord.VideoReader(str(path)).get_batch(list(range(len(decord.VideoReader(str(path)))))).asnumpy()


def red_centroids(frames: np.ndarray) -> np.ndarray:
    """(x, y) centroid per frame of the pixels that are red (weighted by how red), NaN where none are."""
    redness = np.clip(frames[..., 0].astype(np.float32) - frames[..., 1] - 40.0, 0, None)
    rows, cols = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    total = redness.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(redness * cols).sum(axis=(1, 2)) / total, (redness * rows).sum(axis=(1, 2)) / total], 1)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    out = tmp_path_factory.mktemp("lib")
    paths = write_synthetic_library(out, workers=2, **TINY)
    return out, paths


def test_same_seed_gives_identical_files_whatever_the_worker_count(library, tmp_path):
    out, paths = library
    calls = []
    again = write_synthetic_library(tmp_path, workers=1, progress=lambda: calls.append(1), **TINY)
    assert [p.name for p in again] == [p.name for p in paths]
    assert len(calls) == len(paths)
    for a, b in zip(paths, again):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between runs"  # byte-identical: x264 runs single-threaded
        assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    assert (out / "scenes.jsonl").read_bytes() == (tmp_path / "scenes.jsonl").read_bytes()


def test_rerun_skips_clips_that_are_already_written(library):
    out, paths = library
    mtimes = [p.stat().st_mtime_ns for p in paths]
    write_synthetic_library(out, workers=1, **TINY)
    assert [p.stat().st_mtime_ns for p in paths] == mtimes


def test_library_has_natural_clips_and_named_variants_with_their_speed_segments(library):
    out, paths = library
    assert [p.name for p in paths] == ["scene-0000.mp4", "scene-0001.mp4", "variant-half2x-0002.mp4", "variant-slowmo-0003.mp4"]
    index = [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]
    speeds = {r["video"]: [(s["start_frame"], s["speed"]) for s in r["segments"]] for r in index}
    half = next(r for r in index if r["variant"] == "half2x")
    assert speeds["scene-0000.mp4"] == [(0, 1.0)]
    assert speeds["variant-half2x-0002.mp4"] == [(0, 1.0), (round(half["n_frames"] / 2), 2.0)]
    assert speeds["variant-slowmo-0003.mp4"] == [(0, 0.5)]
    assert all(r["scene_type"] in ("bounce", "pendulum", "slide", "spring") for r in index)


def test_sidecar_describes_the_video_file(library):
    out, paths = library
    for path in paths:
        side = json.loads(path.with_suffix(".json").read_text())
        reader = decord.VideoReader(str(path))
        assert len(reader) == side["n_frames"] == len(side["frame_times_s"])
        assert reader[0].shape == (side["height"], side["width"], 3)
        assert reader.get_avg_fps() == pytest.approx(side["fps"])
        assert len(side["tracks_px"]) == len(side["objects"])
        assert side["pixels_per_metre"] == pytest.approx((side["height"] - side["floor_px"]) / side["room_height_m"])


def test_sidecar_holds_every_parameter_needed_to_redraw_the_clip(library):
    out, paths = library
    side = json.loads(paths[0].with_suffix(".json").read_text())
    scenes = dict(library_scenes(count=TINY["count"], seed=TINY["seed"], duration_s=TINY["duration_s"],
                                 sizes=TINY["sizes"], fps_choices=TINY["fps_choices"], variants=False))
    original = scenes[paths[0].name]
    redrawn = np.concatenate(list(render_frames(SceneParams.from_dict(side))))
    assert np.array_equal(redrawn, np.concatenate(list(render_frames(original))))


def test_sidecar_tracks_match_where_the_object_is_drawn_even_with_camera_pan_and_shake(tmp_path):
    scene = plain(sample_scene(3, width=160, height=96, fps=25, duration_s=1.6, scene_type="bounce"))
    ball = dataclasses.replace(scene.objects[0], look=Look(colour_a=RED, colour_b=RED))
    scene = dataclasses.replace(scene, objects=[ball],
                                camera=dataclasses.replace(scene.camera, pan_range_m=0.4 * scene.room_width_m, pan_period_s=3.0,
                                                           shake_px=2.0))
    scene.room_width_m *= 1.4
    render_clip(scene, tmp_path / "c.mp4")
    side = json.loads((tmp_path / "c.json").read_text())
    track = np.stack([side["tracks_px"][0]["x_px"], side["tracks_px"][0]["y_px"]], 1)
    measured = red_centroids(decode(tmp_path / "c.mp4"))
    radius_px = ball.radius_m * scene.pixels_per_metre
    inside = ((track[:, 0] > radius_px + 1) & (track[:, 0] < scene.width - radius_px - 1)
              & (track[:, 1] > radius_px + 1) & (track[:, 1] < scene.height - radius_px - 1))
    assert inside.sum() >= 10
    assert np.abs(measured[inside] - track[inside]).max() < 0.5


def test_dropped_ball_follows_half_g_t_squared_in_pixels(tmp_path):
    drop_height_m = 1.7
    ball = Ball(radius_m=0.12, x0_m=1.0, y0_m=drop_height_m, look=Look(colour_a=RED, colour_b=RED))
    scene = plain(SceneParams(width=192, height=128, fps=30, n_frames=18, room_height_m=2.0, room_width_m=3.0,
                              floor_px=8, objects=[ball]))
    render_clip(scene, tmp_path / "drop.mp4")
    measured = red_centroids(decode(tmp_path / "drop.mp4"))
    t = np.arange(scene.n_frames) / scene.fps
    falling = drop_height_m - 0.5 * G * t**2 > ball.radius_m  # before the first bounce
    expected_row = scene.floor_row_px - (drop_height_m - 0.5 * G * t**2) * scene.pixels_per_metre
    assert falling.sum() >= 15
    assert np.abs(measured[falling, 1] - expected_row[falling]).max() < 0.3
    assert np.abs(measured[falling, 0] - 1.0 * scene.pixels_per_metre).max() < 0.3


def test_pendulum_period_matches_two_pi_root_l_over_g():
    length_m = 0.8
    t = np.linspace(0, 20, 200_001)
    theta = physics.pendulum_angle_rad(t, length_m=length_m, amplitude_rad=0.02)
    crossings = t[1:][(theta[:-1] > 0) & (theta[1:] <= 0)]  # one per period
    assert np.mean(np.diff(crossings)) == pytest.approx(2 * np.pi * np.sqrt(length_m / G), rel=1e-4)
    # Wide swings are slower, as for a real pendulum (≈ +7% at 60°).
    assert physics.pendulum_period_s(length_m, np.radians(60)) / physics.pendulum_period_s(length_m) == pytest.approx(1.073, abs=2e-3)


def test_drawn_pendulum_swings_with_period_two_pi_root_l_over_g(tmp_path):
    length_m = 0.5
    bob = Pendulum(pivot_x_m=1.2, pivot_y_m=1.3, length_m=length_m, bob_radius_m=0.1, amplitude_rad=0.25,
                   look=Look(colour_a=RED, colour_b=RED))
    scene = plain(SceneParams(width=160, height=96, fps=30, n_frames=96, room_height_m=1.5, room_width_m=2.5,
                              floor_px=6, objects=[bob]))
    render_clip(scene, tmp_path / "p.mp4")
    x = red_centroids(decode(tmp_path / "p.mp4"))[:, 0] - bob.pivot_x_m * scene.pixels_per_metre
    i = np.flatnonzero((x[:-1] > 0) & (x[1:] <= 0))
    crossing_frames = i + x[i] / (x[i] - x[i + 1])  # linear interpolation between frames
    period_s = np.mean(np.diff(crossing_frames)) / scene.fps
    assert len(crossing_frames) >= 2
    assert period_s == pytest.approx(physics.pendulum_period_s(length_m, 0.25), rel=0.02)
    assert period_s == pytest.approx(2 * np.pi * np.sqrt(length_m / G), rel=0.03)


def test_spring_period_is_set_by_its_static_stretch():
    stretch_m = 0.3
    t = np.linspace(0, 10, 100_001)
    y = physics.damped_spring_offset_m(t, static_stretch_m=stretch_m, damping_ratio=0.0, x0_m=0.1, v0_m_per_s=0.0,
                                       kick_times_s=[], kick_amplitudes_m=[])
    crossings = t[1:][(y[:-1] > 0) & (y[1:] <= 0)]
    assert np.mean(np.diff(crossings)) == pytest.approx(2 * np.pi * np.sqrt(stretch_m / G), rel=1e-4)


def test_sliding_box_stops_after_v_squared_over_two_mu_g():
    track = physics.sliding_box_track(x0_m=1.0, v0_m_per_s=2.0, half_width_m=0.2, half_height_m=0.15, friction_mu=0.4,
                                      restitution=0.5, x_min_m=0.0, x_max_m=100.0, push_velocities_m_per_s=[0.0],
                                      rest_s=10.0, t_end_s=5.0)
    x, _, _ = track.at(np.array([2.0 / (0.4 * G), 4.0]))
    assert x == pytest.approx(1.0 + 2.0**2 / (2 * 0.4 * G))


def test_objects_stay_inside_the_room_throughout():
    for seed in range(40):
        scene = sample_scene(seed, duration_s=10.0, variant="sped2x")
        t = scene.frame_times_s()
        for obj in scene.objects:
            pos = object_positions_m(obj, scene, t)
            assert np.all(pos["x_m"] >= -1e-9) and np.all(pos["x_m"] <= scene.room_width_m + 1e-9), (seed, obj.kind)
            assert np.all(pos["y_m"] >= -1e-9) and np.all(pos["y_m"] <= scene.room_height_m + 1e-9), (seed, obj.kind)


def test_a_2x_segment_shows_the_same_world_at_twice_the_time_step():
    natural = dataclasses.replace(sample_scene(11, width=128, height=72, fps=25, duration_s=2.0), lighting=Lighting())
    half = natural.n_frames // 2
    half2x = dataclasses.replace(natural, n_frames=half + (natural.n_frames - half) // 2,
                                 segments=[SpeedSegment(0, 1.0), SpeedSegment(half, 2.0)])
    a = np.concatenate(list(render_frames(natural)))
    b = np.concatenate(list(render_frames(half2x)))
    assert np.array_equal(b[:half], a[:half])
    assert np.array_equal(b[half:], a[half::2][:len(b) - half])


def test_slow_motion_advances_physics_half_a_frame_per_frame():
    scene = sample_scene(5, fps=24, duration_s=1.0, variant="slowmo")
    assert np.allclose(np.diff(scene.frame_times_s()), 0.5 / 24)
