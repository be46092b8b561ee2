"""S3D-G with SpeedNet's head: one logit per clip, "is this playing sped up?".

Backbone: S3D (separable 3D convolutions in Inception blocks) with feature gating,
i.e. S3D-G (Xie et al., "Rethinking Spatiotemporal Feature Learning", ECCV 2018),
laid out as torchvision's ``models/video/s3d.py``; as in S3D-G, each Inception branch's
output is gated per channel before concatenation. Head: SpeedNet's (Benaim et al.,
CVPR 2020): a 1×1×1 conv gives a logit per space-time cell, max over space (the most
dominant mover decides), mean over time (robust to a spiky instant).

The model outputs the logit of P(sped up); ``p_natural = 1 - sigmoid(logit)``.
Input: (B, 3, T, H, W) float RGB in [-1, 1] (see ``normalize_uint8``).
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from storage.atomic import atomic_write  # stdlib-only: the one way this project writes files atomically

# torchvision's s3d(): the ungated backbone plus its 400-class Kinetics head (1024·400 + 400).
S3D_REFERENCE_PARAMS = 8_320_048
S3D_KINETICS_HEAD_PARAMS = 1024 * 400 + 400
# Width of the pooled backbone feature (the clip embedding) at width 1.
EMBED_DIM = 1024
# Shortest clip the backbone accepts: with the stride-2 stem, 5 frames are the fewest
# that leave one time cell after the three temporal halvings (stride-1 stem: 3).
MIN_CLIP_FRAMES = 5
# Smallest crop side we accept: the backbone downsamples space 32×, leaving one cell at 32 px.
MIN_INPUT_SIZE = 32
# Config fields that change the weights; the rest say how clips are fed.
ARCHITECTURE_FIELDS = ("width", "stem_temporal_stride", "gating")
CHECKPOINT_FORMAT = "speednet-checkpoint/1"


@dataclass(frozen=True)
class SpeedNetConfig:
    """Everything needed to rebuild a SpeedNet; stored whole in every checkpoint."""

    width: float = 1.0  # multiplies every channel count of S3D's table
    clip_frames: int = 32  # T, frames per clip fed to the model
    input_size: int = 224  # side of the square crop, pixels
    # S3D's stem halves time; short clips keep full temporal resolution instead, so a
    # T=16 clip still reaches the head with 4 time cells (8× total temporal stride → 4×).
    stem_temporal_stride: int = 2
    gating: bool = True  # S3D-G's feature gating; off gives plain S3D
    dropout: float = 0.2  # before the logit conv, as torchvision's S3D classifier

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.stem_temporal_stride not in (1, 2):
            raise ValueError(f"stem_temporal_stride must be 1 or 2, got {self.stem_temporal_stride}")
        if self.clip_frames < MIN_CLIP_FRAMES:
            raise ValueError(f"clip_frames must be >= {MIN_CLIP_FRAMES}, got {self.clip_frames}")
        if self.input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be >= {MIN_INPUT_SIZE} px, got {self.input_size}")


PRESETS = {
    # A quarter of S3D-G's channels at 16×64×64, full temporal resolution through the stem:
    # a training step on 16 clips (8 normal + 8 sped up) takes 0.6-0.8 s on one core of a
    # busy 2-core machine, about 0.4-0.5 s on both cores of an idle one.
    "cpu": SpeedNetConfig(width=0.25, clip_frames=16, input_size=64, stem_temporal_stride=1, dropout=0.1),
    "gpu": SpeedNetConfig(width=1.0, clip_frames=32, input_size=224, stem_temporal_stride=2),
}


def scale_channels(channels: int, width: float) -> int:
    """A channel count of S3D's table times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


def _norm(channels: int) -> nn.BatchNorm3d:
    # S3D's eps; PyTorch's default momentum rather than TF's 0.001, because we train from
    # scratch and short CPU runs must end with usable running statistics.
    return nn.BatchNorm3d(channels, eps=1e-3, momentum=0.1)


class Conv3dBNReLU(nn.Sequential):
    """Conv3d without bias (BN supplies it), BatchNorm, ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size, stride=1, padding=0):
        super().__init__(nn.Conv3d(in_planes, out_planes, kernel_size, stride, padding, bias=False),
                         _norm(out_planes), nn.ReLU(inplace=True))


class TemporalSeparableConv(nn.Sequential):
    """S3D's separable conv: 1×k×k spatial then k×1×1 temporal, each with BN+ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int, padding: int,
                 temporal_stride: int | None = None):
        k, s, p = kernel_size, stride, padding
        t = stride if temporal_stride is None else temporal_stride
        super().__init__(Conv3dBNReLU(in_planes, out_planes, (1, k, k), (1, s, s), (0, p, p)),
                         Conv3dBNReLU(out_planes, out_planes, (k, 1, 1), (t, 1, 1), (p, 0, 0)))


class FeatureGating(nn.Module):
    """S3D-G's self-gating: x · σ(W·mean_{t,h,w}(x) + b), one gate per channel (W is C×C)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) gates in (0, 1) from the space-time mean of x: context re-weights channels."""
        return torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, :, None, None, None]


class SepInceptionBlock3D(nn.Module):
    """S3D's mixed block: four parallel branches (1×1×1; 1×1×1→sep 3; 1×1×1→sep 3;
    max-pool→1×1×1), each branch's output gated (as S3D-G), concatenated on channels."""

    def __init__(self, in_planes: int, b0_out: int, b1_mid: int, b1_out: int, b2_mid: int, b2_out: int,
                 b3_out: int, gating: bool = True):
        super().__init__()
        self.branch0 = Conv3dBNReLU(in_planes, b0_out, 1)
        self.branch1 = nn.Sequential(Conv3dBNReLU(in_planes, b1_mid, 1), TemporalSeparableConv(b1_mid, b1_out, 3, 1, 1))
        self.branch2 = nn.Sequential(Conv3dBNReLU(in_planes, b2_mid, 1), TemporalSeparableConv(b2_mid, b2_out, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Conv3dBNReLU(in_planes, b3_out, 1))
        outs = (b0_out, b1_out, b2_out, b3_out)
        self.gates = nn.ModuleList(FeatureGating(c) if gating else nn.Identity() for c in outs)
        self.out_planes = sum(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch0, self.branch1, self.branch2, self.branch3)
        return torch.cat([gate(branch(x)) for branch, gate in zip(branches, self.gates)], dim=1)


def _mixed_blocks(in_planes: int, width: float, gating: bool) -> Callable[..., SepInceptionBlock3D]:
    """Builds successive mixed blocks from S3D's (unscaled) table rows, carrying each block's
    real output width into the next, so rounding at any width keeps concatenation consistent."""

    def mixed(*table_row: int) -> SepInceptionBlock3D:
        nonlocal in_planes
        block = SepInceptionBlock3D(in_planes, *(scale_channels(n, width) for n in table_row), gating=gating)
        in_planes = block.out_planes
        return block

    return mixed


def s3dg_features(*, width: float = 1.0, stem_temporal_stride: int = 2, gating: bool = True) -> nn.Sequential:
    """The S3D-G backbone, (B, 3, T, H, W) → (B, 1024·width, ~T/8, ~H/32, ~W/32) at stem stride 2."""
    c = lambda n: scale_channels(n, width)  # noqa: E731
    mixed = _mixed_blocks(c(192), width, gating)
    #   mixed(b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out): S3D's table, as torchvision's
    return nn.Sequential(OrderedDict([
        ("Conv3d_1a_7x7", TemporalSeparableConv(3, c(64), 7, stride=2, padding=3, temporal_stride=stem_temporal_stride)),
        ("MaxPool3d_2a_3x3", nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
        ("Conv3d_2b_1x1", Conv3dBNReLU(c(64), c(64), 1)),
        ("Conv3d_2c_3x3", TemporalSeparableConv(c(64), c(192), 3, stride=1, padding=1)),
        ("MaxPool3d_3a_3x3", nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
        ("Mixed_3b", mixed(64, 96, 128, 16, 32, 32)),
        ("Mixed_3c", mixed(128, 128, 192, 32, 96, 64)),
        ("MaxPool3d_4a_3x3", nn.MaxPool3d(3, stride=2, padding=1)),
        ("Mixed_4b", mixed(192, 96, 208, 16, 48, 64)),
        ("Mixed_4c", mixed(160, 112, 224, 24, 64, 64)),
        ("Mixed_4d", mixed(128, 128, 256, 24, 64, 64)),
        ("Mixed_4e", mixed(112, 144, 288, 32, 64, 64)),
        ("Mixed_4f", mixed(256, 160, 320, 32, 128, 128)),
        ("MaxPool3d_5a_2x2", nn.MaxPool3d(2, stride=2, padding=0)),
        ("Mixed_5b", mixed(256, 160, 320, 32, 128, 128)),
        ("Mixed_5c", mixed(384, 192, 384, 48, 128, 128)),
    ]))


def feature_grid(clip_frames: int, size_px: int, stem_temporal_stride: int = 2) -> tuple[int, int, int]:
    """(T', H', W') of the backbone's final map (and so of ``logit_map``) for a T×size×size clip."""

    def out(n: int, kernel: int, stride: int, padding: int) -> int:
        return (n + 2 * padding - kernel) // stride + 1

    t = out(out(out(clip_frames, 7, stem_temporal_stride, 3), 3, 2, 1), 2, 2, 0)  # Conv3d_1a, MaxPool3d_4a, _5a
    s = out(size_px, 7, 2, 3)  # Conv3d_1a
    for _ in range(3):  # MaxPool3d_2a, _3a, _4a
        s = out(s, 3, 2, 1)
    return t, out(s, 2, 2, 0), out(s, 2, 2, 0)  # MaxPool3d_5a


def pool_logits(logit_map: torch.Tensor) -> torch.Tensor:
    """(B, T', H', W') cell logits → (B,) clip logits: max over space, then mean over time."""
    return logit_map.amax(dim=(2, 3)).mean(dim=1)


def pair_centring_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Mean squared midpoint of each (natural, sped-up) pair's two logits, for a same-batch batch.

    Item i and item i + N/2 are one clip at both speeds (``speednet.sampling.make_batch``).
    Their midpoint is what the two answers share: the scene's look, scale and pixel speed,
    none of which says whether the footage is sped up. A network that leans on them ranks a
    scene's two versions right yet puts both on one side of the cut (fast scenes both "sped
    up", still ones both "natural"); this term asks every pair to straddle the cut instead.
    """
    n = logits.shape[0] // 2
    if logits.shape[0] != 2 * n or n == 0:
        raise ValueError(f"a same-batch batch holds pairs: got {logits.shape[0]} logits")
    return ((logits[:n] + logits[n:]) / 2).pow(2).mean()


def p_natural(logits: torch.Tensor) -> torch.Tensor:
    """P(natural speed) from the model's sped-up logits: 1 − σ(logit) = σ(−logit)."""
    return torch.sigmoid(-logits)


def normalize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 RGB (tensor or array) → (B, 3, T, H, W) float32 in [-1, 1], the model's input."""
    frames = torch.as_tensor(frames)
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected (B, T, H, W, 3) frames, got shape {tuple(frames.shape)}")
    return frames.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)


class SpeedNet(nn.Module):
    """S3D-G backbone + SpeedNet head; ``forward`` gives the sped-up logit of each clip."""

    def __init__(self, config: SpeedNetConfig):
        super().__init__()
        self.config = config
        self.features = s3dg_features(width=config.width, stem_temporal_stride=config.stem_temporal_stride,
                                      gating=config.gating)
        self.embed_dim = self.features[-1].out_planes
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Conv3d(self.embed_dim, 1, kernel_size=1))

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) clips, got shape {tuple(x.shape)}")
        if min(feature_grid(x.shape[2], min(x.shape[3:]), self.config.stem_temporal_stride)) < 1:
            raise ValueError(f"clips of shape {tuple(x.shape[2:])} (T, H, W) are too small for this backbone; "
                             f"use at least {MIN_CLIP_FRAMES} frames and {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} px")
        # Channels-last: PyTorch's CPU max-pool and oneDNN convs are several times faster on
        # NDHWC (the max-pools dominated the step in NCDHW); cuDNN takes either.
        return self.features(x.contiguous(memory_format=torch.channels_last_3d))

    def logit_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, T', H', W'): the sped-up logit of every space-time cell (for dense scoring)."""
        return self.head(self._backbone(x)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B,) sped-up logits, pooled as the paper: max over space, mean over time."""
        return pool_logits(self.logit_map(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) → (B, embed_dim): the backbone feature averaged over time and space (retrieval)."""
        return self._backbone(x).mean(dim=(2, 3, 4))


def build_speednet(*, preset: str = "cpu", **overrides: Any) -> SpeedNet:
    """A fresh SpeedNet from a named preset, any config field overridden by keyword."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SpeedNetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown SpeedNetConfig fields {unknown}; known: {sorted(fields)}")
    return SpeedNet(dataclasses.replace(PRESETS[preset], **overrides))


def random_init_like(model: SpeedNet) -> SpeedNet:
    """The same architecture and settings as ``model`` with fresh weights: the "random init" every gain is measured against."""
    return SpeedNet(dataclasses.replace(model.config))


def count_parameters(model: nn.Module) -> int:
    """Number of learned parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- checkpoints

def _unwrap(model: nn.Module) -> nn.Module:
    """The SpeedNet inside a DDP (``.module``) or torch.compile (``._orig_mod``) wrapper."""
    while not isinstance(model, SpeedNet):
        inner = getattr(model, "module", None)
        inner = getattr(model, "_orig_mod", None) if inner is None else inner
        if inner is None:
            raise TypeError(f"expected a SpeedNet (possibly wrapped), got {type(model).__name__}")
        model = inner
    return model


def _check_same_architecture(path: Path, found: SpeedNetConfig, expected: SpeedNetConfig) -> None:
    diffs = [(f, getattr(found, f), getattr(expected, f)) for f in ARCHITECTURE_FIELDS
             if getattr(found, f) != getattr(expected, f)]
    if diffs:
        found_s = ", ".join(f"{f}={a}" for f, a, _ in diffs)
        expected_s = ", ".join(f"{f}={b}" for f, _, b in diffs)
        raise ValueError(f"{path}: checkpoint has {found_s} but the model expects {expected_s}; "
                         f"build the model from the checkpoint's own config (load_checkpoint(path)) "
                         f"or use a checkpoint trained with the same preset")


def _plain(value: Any, where: str = "extra") -> Any:
    """``extra`` as values a weights-only load accepts: numpy scalars/arrays and paths converted,
    anything else unknown refused now rather than making the file unloadable later."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy":
        return value.item() if getattr(value, "ndim", 1) == 0 else torch.from_numpy(value.copy())
    raise TypeError(f"{where} has type {type(value).__name__}; checkpoints hold plain Python values and tensors only")


def save_checkpoint(path: str | Path, model: nn.Module, config: SpeedNetConfig | None = None,
                    extra: dict | None = None) -> Path:
    """Write model weights, config and ``extra`` (plain values, tensors, numpy) to ``path`` atomically.

    Written to a temp file in the same folder then renamed, so a killed run never leaves a
    half-written checkpoint. Weights are stored on CPU so the file loads on any device.
    """
    path = Path(path)
    net = _unwrap(model)
    config = config or net.config
    wrong = [f"{f}={getattr(config, f)} (model: {getattr(net.config, f)})" for f in ARCHITECTURE_FIELDS
             if getattr(config, f) != getattr(net.config, f)]
    if wrong:
        raise ValueError(f"{path}: not saved, the config does not describe the model: {', '.join(wrong)}; "
                         f"pass the model's own config (model.config)")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "extra": _plain(dict(extra or {})),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def _read_checkpoint(path: str | Path) -> tuple[Path, dict, SpeedNetConfig]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SpeedNet checkpoint at {path}: check the path, or train a model first "
                                f"(the train-speednet flow writes checkpoints with save_checkpoint)")
    try:
        # weights_only: a checkpoint is data; never execute code found in a file.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable SpeedNet checkpoint ({e}); re-save it with save_checkpoint "
                         f"or retrain") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a SpeedNet checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
                         f"re-save it with save_checkpoint or retrain")
    try:
        config = SpeedNetConfig(**payload["config"])
    except TypeError as e:
        raise ValueError(f"{path}: checkpoint config does not fit this version of SpeedNetConfig ({e}); "
                         f"retrain or use the code version that wrote it") from e
    return path, payload, config


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    expect_config: SpeedNetConfig | None = None) -> tuple[SpeedNet, SpeedNetConfig, dict]:
    """Rebuild (model, config, extra) from a checkpoint; the model is on ``map_location``, in eval mode.

    With ``expect_config``, a checkpoint of another architecture (e.g. another width) is a
    ValueError naming both values, instead of a state-dict shape error deep in torch.
    """
    path, payload, config = _read_checkpoint(path)
    if expect_config is not None:
        _check_same_architecture(path, config, expect_config)
    model = SpeedNet(config)
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location).eval(), config, payload["extra"]


def checkpoint_config(path: str | Path) -> SpeedNetConfig:
    """The SpeedNetConfig a checkpoint was saved with (e.g. the input size a fine-tune keeps), without building the model."""
    return _read_checkpoint(path)[2]


def load_weights_into(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint's weights into an existing model (e.g. to resume training); returns ``extra``.

    The checkpoint must have the model's architecture (width, stem stride, gating), else ValueError.
    """
    path, payload, config = _read_checkpoint(path)
    net = _unwrap(model)
    _check_same_architecture(path, config, net.config)
    net.load_state_dict(payload["state_dict"])
    return payload["extra"]
