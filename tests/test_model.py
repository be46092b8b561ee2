"""S3D-G + SpeedNet head: architecture facts, the head's pooling, learning, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from speednet.model import (EMBED_DIM, MIN_CLIP_FRAMES, PRESETS, S3D_KINETICS_HEAD_PARAMS, S3D_REFERENCE_PARAMS,
                            FeatureGating, SpeedNet, build_speednet, count_parameters, feature_grid,
                            load_checkpoint, load_weights_into, normalize_uint8, p_natural, pair_centring_penalty,
                            pool_logits, save_checkpoint)

# Output widths of the four branches of Mixed_3b … Mixed_5c in S3D's table (torchvision's s3d).
S3D_BRANCH_OUTPUTS = [
    (64, 128, 32, 32), (128, 192, 96, 64),                                         # Mixed_3b, 3c
    (192, 208, 48, 64), (160, 224, 64, 64), (128, 256, 64, 64), (112, 288, 64, 64),
    (256, 320, 128, 128),                                                          # Mixed_4b … 4f
    (256, 320, 128, 128), (384, 384, 128, 128),                                    # Mixed_5b, 5c
]
SPEEDNET_HEAD_PARAMS = EMBED_DIM + 1  # 1×1×1 conv, 1024 → 1 logit, with bias


def clips(batch: int, config=PRESETS["cpu"], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 3, config.clip_frames, config.input_size, config.input_size)
    return torch.rand(shape, generator=generator) * 2 - 1


def test_ungated_backbone_has_exactly_torchvision_s3d_parameters():
    model = build_speednet(preset="gpu", gating=False)
    backbone = count_parameters(model) - SPEEDNET_HEAD_PARAMS
    assert backbone == S3D_REFERENCE_PARAMS - S3D_KINETICS_HEAD_PARAMS == 7_910_048


def test_full_size_parameter_count_is_s3d_plus_gates_plus_one_logit_head():
    # torchvision's S3D: 8,320,048 = backbone 7,910,048 + Kinetics head 1024·400 + 400 = 410,000.
    # S3D-G adds one C×C gate with C biases on each of the 36 branch outputs: Σ C(C+1) = 1,187,952.
    # SpeedNet's head is a 1024 → 1 conv: 1,025. Total 7,910,048 + 1,187,952 + 1,025 = 9,099,025.
    gates = sum(c * (c + 1) for row in S3D_BRANCH_OUTPUTS for c in row)
    expected = S3D_REFERENCE_PARAMS - S3D_KINETICS_HEAD_PARAMS + gates + SPEEDNET_HEAD_PARAMS
    assert gates == 1_187_952
    assert count_parameters(build_speednet(preset="gpu")) == expected == 9_099_025


def test_gating_is_per_channel():
    model = build_speednet(preset="gpu")
    gates = [m for m in model.modules() if isinstance(m, FeatureGating)]
    assert len(gates) == 9 * 4
    assert sorted(g.fc.weight.shape[0] for g in gates) == sorted(c for row in S3D_BRANCH_OUTPUTS for c in row)
    assert all(g.fc.weight.shape == (g.fc.in_features,) * 2 and g.fc.bias.shape == (g.fc.in_features,) for g in gates)

    torch.manual_seed(0)
    gate, x = FeatureGating(8), torch.randn(2, 8, 3, 4, 4)
    values = gate.gate(x)
    assert values.shape == (2, 8) and values[0].std() > 1e-3  # one gate per channel, not one shared scalar
    ratio = gate(x) / x
    assert torch.allclose(ratio, values[:, :, None, None, None].expand_as(x), atol=1e-5)


def test_width_scales_every_channel_and_keeps_concatenation_consistent():
    assert build_speednet(preset="cpu").embed_dim == EMBED_DIM * PRESETS["cpu"].width
    odd = build_speednet(width=0.3, input_size=32, clip_frames=8)
    assert odd.embed(clips(1, odd.config)).shape == (1, odd.embed_dim)
    assert count_parameters(odd) < count_parameters(build_speednet(width=0.5))


def test_cpu_preset_forward_shapes():
    model = build_speednet(preset="cpu").eval()
    x, config = clips(2), PRESETS["cpu"]
    with torch.no_grad():
        assert model(x).shape == (2,)
        assert model.embed(x).shape == (2, EMBED_DIM * config.width)
        grid = feature_grid(config.clip_frames, config.input_size, config.stem_temporal_stride)
        assert model.logit_map(x).shape == (2, *grid) == (2, 4, 2, 2)  # T=16 keeps 4 time cells


def test_clip_logit_is_max_over_space_then_mean_over_time():
    logit_map = torch.zeros(1, 4, 3, 3)
    logit_map[0, 1, 2, 0] = 8.0  # one hot cell in one of four time steps
    assert pool_logits(logit_map).item() == pytest.approx(8.0 / 4)  # max keeps it; the time mean divides by 4
    model = build_speednet(preset="cpu").eval()
    with torch.no_grad():
        x = clips(2)
        assert torch.allclose(model(x), pool_logits(model.logit_map(x)))


def test_p_natural_is_one_minus_p_sped_up():
    logits = torch.tensor([-3.0, 0.0, 2.0])
    assert torch.allclose(p_natural(logits), 1 - torch.sigmoid(logits))


def test_normalize_uint8_gives_channels_first_minus_one_to_one():
    frames = torch.zeros(1, 2, 4, 5, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    x = normalize_uint8(frames)
    assert x.shape == (1, 3, 2, 4, 5) and x.dtype == torch.float32
    assert x[:, 0].eq(1).all() and x[:, 1:].eq(-1).all()


def test_too_short_clips_are_refused_with_the_minimum():
    model = build_speednet(preset="gpu", width=0.125).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, MIN_CLIP_FRAMES, 32, 32))
        with pytest.raises(ValueError, match=f"at least {MIN_CLIP_FRAMES} frames"):
            model(torch.zeros(1, 3, MIN_CLIP_FRAMES - 1, 32, 32))


def test_unknown_preset_or_field_is_rejected():
    with pytest.raises(ValueError, match="cpu"):
        build_speednet(preset="tpu")
    with pytest.raises(ValueError, match="widht"):
        build_speednet(widht=0.5)


def test_a_few_training_steps_lower_the_loss_and_change_the_weights():
    torch.manual_seed(0)
    model = build_speednet(preset="cpu", dropout=0.0).train()
    x, labels = clips(8, seed=1), torch.tensor([0.0, 1.0] * 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith("weight"))


def test_pair_centring_penalty_is_what_a_scenes_two_answers_share_not_how_far_apart_they_are():
    natural, sped_up = torch.tensor([-3.0, -1.0]), torch.tensor([3.0, 1.0])  # two scenes, each pair straddling 0
    assert pair_centring_penalty(torch.cat([natural, sped_up])) == 0
    assert pair_centring_penalty(torch.cat([natural + 2, sped_up + 2])) == pytest.approx(4.0)  # a fast scene: both up
    assert pair_centring_penalty(torch.cat([natural * 5, sped_up * 5])) == 0  # a wider gap costs nothing
    assert pair_centring_penalty(torch.tensor([-5.0, 1.0, 5.0, 3.0])) == pytest.approx((0 + 2 ** 2) / 2)
    with pytest.raises(ValueError, match="pairs"):
        pair_centring_penalty(torch.zeros(3))


def test_the_pair_centring_term_trains_a_shared_offset_away():
    torch.manual_seed(0)
    model = build_speednet(preset="cpu", dropout=0.0).train()
    with torch.no_grad():
        model.head[1].bias.fill_(4.0)  # every answer "sped up": pairs ranked or not, none straddles the cut
    x = clips(8, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    penalties = []
    for _ in range(15):
        penalty = pair_centring_penalty(model(x))
        optimizer.zero_grad()
        penalty.backward()
        optimizer.step()
        penalties.append(penalty.item())
    assert penalties[0] > 4 and penalties[-1] < 0.1 * penalties[0]


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = build_speednet(preset="cpu").eval()
    extra = {"step": 7, "val_acc": np.float32(0.75), "history": [0.69, 0.52], "data": tmp_path}
    path = save_checkpoint(tmp_path / "models" / "speednet.pt", model, model.config, extra)
    loaded, config, extra = load_checkpoint(path)
    assert config == model.config
    assert extra == {"step": 7, "val_acc": 0.75, "history": [0.69, 0.52], "data": str(tmp_path)}
    assert not loaded.training
    with torch.no_grad():
        x = clips(2)
        assert torch.equal(model(x), loaded(x)) and torch.equal(model.embed(x), loaded.embed(x))
    assert [p.name for p in path.parent.iterdir()] == ["speednet.pt"]  # no temp file left behind

    other = build_speednet(preset="cpu")
    assert load_weights_into(other, path) == extra
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


def test_extra_that_could_not_be_loaded_back_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['when'\] has type object"):
        save_checkpoint(tmp_path / "m.pt", build_speednet(preset="cpu"), extra={"when": object()})
    assert not list(tmp_path.iterdir())


def test_checkpoint_of_another_width_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "cpu.pt", build_speednet(preset="cpu"))
    wider = dataclasses.replace(PRESETS["cpu"], width=0.5)
    with pytest.raises(ValueError, match=r"width=0\.25.*width=0\.5"):
        load_checkpoint(path, expect_config=wider)
    with pytest.raises(ValueError, match=r"width=0\.25.*width=0\.5"):
        load_weights_into(SpeedNet(wider), path)


def test_missing_checkpoint_is_a_clear_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt"):
        load_checkpoint(path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_code_runs_on_cuda(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_speednet(preset="cpu"))
    model, _, _ = load_checkpoint(path, map_location="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert model(clips(2).cuda()).shape == (2,)
