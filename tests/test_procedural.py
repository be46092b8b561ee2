"""The procedural training source: a fresh physics scene for every clip, never an evaluation scene."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial

import numpy as np
import pytest
import torch

from speednet.model import PRESETS
from speednet.sampling import AugmentConfig, make_batch, skip_sample
from speednet.synthetic.library import library_scenes
from speednet.synthetic.stream import (EVALUATION_SEED, STREAM_TAG, SceneClipBatches, SceneStreamConfig,
                                       calibration_clips, check_evaluation_seed, draw_clip, evaluation_clips,
                                       stream_seed)

CONFIG = PRESETS["cpu"]
T = CONFIG.clip_frames


def stream(seed: int = 0, clips: int = 4, augment: AugmentConfig | None = None, **kwargs) -> SceneClipBatches:
    build = partial(make_batch, config=CONFIG, augment=augment or AugmentConfig(spatial_aug=False))
    return SceneClipBatches(clips_per_batch=clips, make_batch=build, seed=seed,
                            config=SceneStreamConfig(sizes=((64, 64),)), **kwargs)


def test_every_clip_is_a_new_scene_and_batches_hold_both_speeds_of_each():
    batches = iter(stream(clips=4))
    seen = []
    for _ in range(3):
        x, labels = next(batches)
        assert x.shape == (8, 3, T, 64, 64) and x.min() >= -1 and x.max() <= 1
        assert labels.tolist() == [0.0] * 4 + [1.0] * 4  # balanced: each scene at natural speed and sped up
        seen += [x[i].numpy().tobytes() for i in range(4)]
    assert len(set(seen)) == len(seen) == 12  # twelve scenes, twelve different natural-speed clips
    scenes = [draw_clip(stream_seed(0, 0, k), SceneStreamConfig(), (64, 64)).scene for k in range(20)]
    assert len({(s.room_height_m, s.objects[0].look.colour_a) for s in scenes}) == 20


def test_a_stream_is_deterministic_from_its_seed_and_other_seeds_give_other_scenes():
    a, b, c = (next(iter(stream(seed=s)))[0] for s in (5, 5, 6))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_a_resumed_run_draws_new_streams_not_the_first_scenes_again():
    first = next(iter(stream(seed=1)))[0]
    resumed = next(iter(stream(seed=1, first_stream=300 * 4096)))[0]
    assert not torch.equal(first, resumed)


def test_training_seeds_never_meet_evaluation_or_library_seeds():
    # numpy pads a seed sequence with zeros, so (s, k) and (s, k, 0, 0) are the same stream:
    # the training tag as first word keeps every stream scene apart from every (seed, k) scene.
    assert np.random.default_rng([3, 4]).random() == np.random.default_rng([3, 4, 0, 0]).random()
    assert all(stream_seed(r, s, k)[0] == STREAM_TAG for r, s, k in [(0, 0, 0), (7, 2, 10**6)])
    with pytest.raises(ValueError, match="tag"):
        check_evaluation_seed(STREAM_TAG)
    assert check_evaluation_seed(EVALUATION_SEED) == EVALUATION_SEED
    for library_seed in (0, EVALUATION_SEED):  # the sample library's and the evaluation set's
        library = {np.random.default_rng([library_seed, k]).bytes(16) for k in range(50)}
        training = {np.random.default_rng(list(stream_seed(library_seed, 0, k))).bytes(16) for k in range(50)}
        assert not library & training


def test_evaluation_clips_are_the_evaluation_librarys_scenes_at_the_model_size():
    clips = evaluation_clips(3, clip_frames=3 * T)
    scenes = [params for _, params in library_scenes(count=3, seed=EVALUATION_SEED, duration_s=(5.0, 10.0),
                                                     sizes=SceneStreamConfig().sizes, fps_choices=(24, 25, 30),
                                                     variants=False)]
    for clip, scene in zip(clips, scenes):
        assert clip.shape == (3 * T, 64, round(64 * scene.width / scene.height), 3) and clip.dtype == np.uint8
    assert np.array_equal(clips[0], evaluation_clips(1, clip_frames=3 * T)[0])  # repeatable


def test_evaluation_clips_drawn_at_other_times_are_the_same_scenes_at_those_times():
    whole = evaluation_clips(2, clip_frames=3 * T)
    halves = evaluation_clips(2, clip_frames=3 * T, times=np.arange(0, 2 * T, 2))  # every second frame: 2x
    assert all(np.array_equal(h, w[0:2 * T:2]) for h, w in zip(halves, whole))
    with pytest.raises(ValueError, match="times must lie in"):
        evaluation_clips(1, clip_frames=3 * T, times=np.array([0.0, 3 * T]))


def test_regular_sampling_resamples_at_the_drawn_rate_without_random_drops():
    rng = np.random.default_rng(0)
    for sped_up, (low, high) in ((False, (1.0, 1.2)), (True, (1.7, 2.2))):
        for _ in range(200):
            indices = skip_sample(3 * T, T, rng, sped_up, sampler="regular")
            gaps = np.diff(indices)
            assert set(gaps) <= {int(np.floor(low)), int(np.ceil(high))} | {2} and gaps.min() >= 1
            assert low - 1 / T <= (indices[-1] - indices[0]) / (T - 1) <= high + 1 / T


def test_the_curriculum_starts_with_an_easy_contrast_and_ends_at_the_papers_rates():
    from tasks.trainer import TrainConfig, curriculum_augment

    config = TrainConfig(curriculum_steps=100, temporal_sampler="regular", procedural_share=1.0)
    assert curriculum_augment(0, config).sped_up_rate == (3.0, 4.0)
    assert curriculum_augment(100, config).sped_up_rate == pytest.approx((1.7, 2.2))
    assert curriculum_augment(5000, config).sped_up_rate == pytest.approx((1.7, 2.2))
    early = curriculum_augment(0, config)
    rng = np.random.default_rng(0)
    spans = [np.ptp(skip_sample(64, T, rng, True, sampler="regular", sped_up_rate=early.sped_up_rate)) / (T - 1)
             for _ in range(50)]
    assert min(spans) > 2.8


def test_mixed_loader_draws_both_sources_in_the_asked_share():
    from tasks.trainer import MixedBatches

    class Constant(torch.utils.data.IterableDataset):
        def __init__(self, value):
            self.value = value

        def __iter__(self):
            while True:
                yield self.value

    mixed = iter(MixedBatches(Constant("scene"), Constant("library"), share=0.25, seed=0))
    drawn = [next(mixed) for _ in range(2000)]
    assert drawn.count("scene") / len(drawn) == pytest.approx(0.25, abs=0.03)


def test_make_batch_renders_each_procedural_frame_once_for_both_versions(monkeypatch):
    import speednet.synthetic.stream as stream_module

    drawn = []
    real_render = stream_module.render_frames

    def counting(scene, t_seconds):
        drawn.append(len(t_seconds))
        return real_render(scene, t_seconds)

    monkeypatch.setattr(stream_module, "render_frames", counting)
    clip = draw_clip(stream_seed(0, 0, 0), SceneStreamConfig(), (64, 64))
    augment = AugmentConfig(spatial_aug=False, temporal_aug=False)
    x, labels = make_batch([clip], CONFIG, np.random.default_rng(0), augment)
    assert x.shape == (2, 3, T, 64, 64) and labels.tolist() == [0.0, 1.0]
    assert drawn == [len(set(range(T)) | set(range(0, 2 * T, 2)))]  # 24 frames, once, for both versions
    natural, fast = ((x[i] + 1) * 127.5 for i in (0, 1))
    torch.testing.assert_close(natural[:, 2], fast[:, 1], atol=1e-3, rtol=0)  # frame 2 is the 2x clip's frame 1


def test_procedural_training_runs_and_reports_held_out_samplers(tmp_path):
    from storage.clip_dataset import ClipSource
    from tasks.trainer import TrainConfig, train

    config = TrainConfig(steps=3, batch_size=4, procedural_share=1.0, temporal_sampler="mixed", ema_decay=0.9,
                         eval_every=2, eval_scenes=3, bn_recalibration_batches=1, log_every=1, loader_workers=0,
                         checkpoint_every=3, curriculum_steps=2, pair_centring=0.5)
    result = train(config, ClipSource({}), tmp_path / "run")
    reports = [h["held_out"] for h in result["history"] if "held_out" in h]
    assert [h["step"] for h in result["history"] if "held_out" in h] == [2, 3]
    assert set(reports[-1]) >= {"exact", "regular", "drops", "ranking", "natural_ok", "sped_up_ok"}
    assert all(0 <= reports[-1][k] <= 1 for k in ("exact", "regular", "drops", "ranking"))
    final = torch.load(result["checkpoint"], weights_only=True)
    assert result["checkpoint"].endswith("final.pt") and final["extra"]["step"] == 3
    resumed = train(dataclasses.replace(config, steps=4), ClipSource({}), tmp_path / "run", resume=True)
    assert [h["step"] for h in resumed["history"] if "held_out" not in h or h["step"] == 4][-1] == 4


def test_calibration_scenes_look_like_evaluation_scenes_but_are_never_one_of_them():
    calibration, evaluation = calibration_clips(4, run_seed=0, clip_frames=3 * T), evaluation_clips(4, clip_frames=3 * T)
    assert all(c.shape[0] == 3 * T and min(c.shape[1:3]) == 64 for c in calibration)
    assert not any(np.array_equal(c, e) for c in calibration for e in evaluation if c.shape == e.shape)
    assert np.array_equal(calibration[1], calibration_clips(2, run_seed=0, clip_frames=3 * T)[1])  # repeatable
    assert not np.array_equal(calibration[0], calibration_clips(1, run_seed=1, clip_frames=3 * T)[0])


def test_threshold_calibration_moves_the_cut_between_exact_1x_and_2x(pan_model):
    """A model that ranks 1x below 2x but calls both sped up: calibration on some clips fixes others."""
    from _pan import PAN_PX, pan, texture
    from speednet.evaluation import speednet_accuracy, speednet_scores
    from tasks.trainer import calibrate_threshold

    rng = np.random.default_rng(5)
    clips = [pan(texture(rng, 3 * T * 2 + 100), np.full(3 * T, PAN_PX)) for _ in range(16)]
    model = copy.deepcopy(pan_model)
    lowest = min(logit.min() for logit in speednet_scores(model, clips, logits=True))
    with torch.no_grad():
        model.head[-1].bias += 1.0 - lowest  # now every version reads as sped up
    assert speednet_accuracy(model, clips[8:]) == 0.5
    shift = calibrate_threshold(model, clips[:8])
    assert shift > 1.0 and speednet_accuracy(model, clips[8:]) >= 0.8


def test_swa_delivers_the_mean_of_the_weights_after_each_step_from_swa_from_and_survives_a_resume(tmp_path):
    """final.pt = mean of the raw weights after steps 2 and 3; re-finishing from last.pt gives the same file."""
    from storage.clip_dataset import ClipSource
    from tasks.trainer import TrainConfig, train

    run = tmp_path / "run"
    raw = []  # on_log runs before a step's checkpoint: last.pt then holds the previous step's weights
    config = TrainConfig(steps=3, batch_size=4, procedural_share=1.0, temporal_sampler="mixed", ema_decay=0.9,
                         swa_from=1, log_every=1, loader_workers=0, checkpoint_every=1)
    result = train(config, ClipSource({}), run,
                   on_log=lambda entry: raw.append(torch.load(run / "last.pt", weights_only=True)["state_dict"])
                   if entry["step"] > 1 else None)
    after_2, after_3 = raw[1], torch.load(run / "last.pt", weights_only=True)["state_dict"]
    delivered = torch.load(result["checkpoint"], weights_only=True)["state_dict"]
    weights = [k for k, v in delivered.items() if v.is_floating_point() and "running" not in k]
    assert any(not torch.equal(after_2[k], after_3[k]) for k in weights)  # the two points differ
    for k in weights:
        torch.testing.assert_close(delivered[k], (after_2[k] + after_3[k]) / 2)
    (run / "final.pt").unlink()
    again = train(config, ClipSource({}), run, resume=True)  # nothing left to train: only the ending, from last.pt
    for k, v in torch.load(again["checkpoint"], weights_only=True)["state_dict"].items():
        torch.testing.assert_close(v, delivered[k])


def test_bn_source_scenes_re_estimates_batchnorm_on_the_calibration_scenes_at_exact_speeds(tmp_path):
    from speednet.evaluation import exact_version_batches
    from speednet.model import load_checkpoint
    from storage.clip_dataset import ClipSource
    from tasks.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="calibration_scenes"):
        TrainConfig(procedural_share=1.0, bn_recalibration_batches=1, bn_source="scenes")
    config = TrainConfig(steps=2, batch_size=4, procedural_share=1.0, temporal_sampler="mixed", swa_from=1,
                         bn_recalibration_batches=1, bn_source="scenes", calibration_scenes=4, loader_workers=0)
    final, _, _ = load_checkpoint(train(config, ClipSource({}), tmp_path / "run")["checkpoint"])
    clips = calibration_clips(4, run_seed=config.seed, clip_frames=3 * T)
    batches = list(exact_version_batches(clips, CONFIG))
    assert sum(len(b) for b in batches) <= 8 and all(len(b) >= 2 and b.shape[2] == T for b in batches)
    expected, _, _ = load_checkpoint(tmp_path / "run" / "last.pt")  # the one-point mean: the last weights
    torch.optim.swa_utils.update_bn(batches, expected)
    bn = [name for name, m in final.named_modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bn
    modules_final, modules_expected = dict(final.named_modules()), dict(expected.named_modules())
    for name in bn:
        torch.testing.assert_close(modules_final[name].running_mean, modules_expected[name].running_mean)
        torch.testing.assert_close(modules_final[name].running_var, modules_expected[name].running_var)


def test_swa_mean_update_keeps_a_running_mean_of_floats_and_lets_integer_buffers_follow():
    """The update torch's foreach SWA refuses on CUDA (integer BatchNorm counters): a mean for floats, a copy for ints."""
    from tasks.trainer import swa_mean_update

    points = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0]), torch.tensor([5.0, 7.0])]
    averaged = [points[0].clone()]
    for n, point in enumerate(points[1:], start=1):
        swa_mean_update(averaged, [point], torch.tensor(n))
    torch.testing.assert_close(averaged[0], torch.stack(points).mean(0))
    counter = [torch.tensor(3, dtype=torch.long)]
    swa_mean_update(counter, [torch.tensor(9, dtype=torch.long)], 1)
    assert counter[0].dtype == torch.long and int(counter[0]) == 9


def test_library_scene_is_the_scene_and_start_the_calibration_clips_show():
    """A bench reading a calibration scene's ground truth gets the frames the clip holds."""
    from speednet.sampling import resize_short_side
    from speednet.synthetic.library import render_frames
    from speednet.synthetic.stream import CALIBRATION_STREAM, library_scene, stream_seed

    clips = calibration_clips(2, run_seed=5, size_px=32, clip_frames=6)
    for k, clip in enumerate(clips):
        scene, start_s = library_scene(stream_seed(5, CALIBRATION_STREAM, k), 6)
        frames = np.concatenate(list(render_frames(scene, start_s + np.arange(6) / scene.fps)))
        np.testing.assert_array_equal(resize_short_side(frames, 32).numpy(), clip)
