"""Held-out accuracy, natural vs 2x, for SpeedNet and for the mean-optical-flow baseline.

Evaluation uses exact speeds (every frame vs every second frame, no rate jitter) and a
centre crop, so the numbers measure the question users ask — "is this 1x or 2x?" — and
are repeatable. Both methods see the same clips.
"""

from __future__ import annotations

import numpy as np
import torch

from speednet.model import SpeedNet, normalize_uint8
from speednet.optical_flow import fit_threshold, mean_flow_magnitude
from speednet.sampling import spatial_augment


def speed_versions(clip: np.ndarray, clip_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(natural, 2x) versions of a clip: its first T frames, and every second one of its first 2T."""
    if len(clip) < 2 * clip_frames:
        raise ValueError(f"a clip of {len(clip)} frames cannot give a 2x version of {clip_frames} frames")
    return clip[:clip_frames], clip[: 2 * clip_frames : 2]


@torch.no_grad()
def speednet_scores(model: SpeedNet, clips: list[np.ndarray], *, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """P(sped up) of the natural and of the 2x version of every clip (centre crop, eval mode)."""
    config = model.config
    device = next(model.parameters()).device
    model.eval()
    rng = np.random.default_rng(0)  # unused with augmentation off; keeps the call signature honest
    items = [version for clip in clips for version in speed_versions(clip, config.clip_frames)]
    probabilities = []
    for start in range(0, len(items), batch_size):
        chunk = [spatial_augment(item, config.input_size, rng, enabled=False) for item in items[start:start + batch_size]]
        logits = model(normalize_uint8(torch.stack(chunk)).to(device))
        probabilities.append(torch.sigmoid(logits.float()).cpu().numpy())
    p = np.concatenate(probabilities) if probabilities else np.zeros(0)
    return p[0::2], p[1::2]


def speednet_accuracy(model: SpeedNet, clips: list[np.ndarray]) -> float:
    """Share of versions (natural and 2x of every clip) classified right at threshold 0.5."""
    if not clips:
        return float("nan")
    p_natural_version, p_fast_version = speednet_scores(model, clips)
    return float(np.mean(np.concatenate([p_natural_version < 0.5, p_fast_version >= 0.5])))


def flow_magnitudes_of(clips: list[np.ndarray], clip_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean optical-flow magnitude of the natural and of the 2x version of every clip."""
    pairs = [speed_versions(clip, clip_frames) for clip in clips]
    return (np.array([mean_flow_magnitude(n) for n, _ in pairs]), np.array([mean_flow_magnitude(f) for _, f in pairs]))


def flow_baseline_accuracy(train_clips: list[np.ndarray], test_clips: list[np.ndarray], clip_frames: int) -> dict:
    """Fit the magnitude threshold on ``train_clips``, report accuracy on ``test_clips`` (the paper's baseline)."""
    natural, fast = flow_magnitudes_of(train_clips, clip_frames)
    classifier = fit_threshold(np.concatenate([natural, fast]), np.r_[np.zeros(len(natural)), np.ones(len(fast))].astype(bool))
    if not test_clips:
        return {"threshold": float(classifier.threshold), "accuracy": float("nan")}
    natural, fast = flow_magnitudes_of(test_clips, clip_frames)
    labels = np.r_[np.zeros(len(natural)), np.ones(len(fast))].astype(bool)
    return {"threshold": float(classifier.threshold),
            "accuracy": float(classifier.accuracy(np.concatenate([natural, fast]), labels))}
