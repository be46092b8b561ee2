"""Held-out accuracy, natural vs 2x, for SpeedNet and for the mean-optical-flow baseline.

Evaluation uses exact speeds (every frame vs every second frame, no rate jitter) and whole
frames at the model's input size (as the scorer and the flow baseline see them), so the
numbers measure the question users ask — "is this 1x or 2x?" — and
are repeatable. Both methods see the same clips.
"""

from __future__ import annotations

import numpy as np
import torch

from speednet.model import SpeedNet, normalize_uint8
from speednet.optical_flow import fit_threshold, mean_flow_magnitude
from speednet.sampling import resize_short_side


def speed_versions(clip: np.ndarray, clip_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(natural, 2x) versions of a clip: its first T frames, and every second one of its first 2T."""
    if len(clip) < 2 * clip_frames:
        raise ValueError(f"a clip of {len(clip)} frames cannot give a 2x version of {clip_frames} frames")
    return clip[:clip_frames], clip[: 2 * clip_frames : 2]


@torch.no_grad()
def speednet_scores(model: SpeedNet, clips: list[np.ndarray], *, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """P(sped up) of the natural and of the 2x version of every clip (whole frames, eval mode).

    Whole frames, short side at the input size, as the scorer sees them: a centre square of a
    16:9 frame drops 44% of its width, and with it the only moving object of one synthetic
    clip in eight (bench/crop_motion.py).
    """
    config = model.config
    device = next(model.parameters()).device
    model.eval()
    items = [resize_short_side(version, config.input_size) for clip in clips
             for version in speed_versions(clip, config.clip_frames)]
    by_shape: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):  # clips of one aspect ratio batch together
        by_shape.setdefault(tuple(item.shape), []).append(index)
    p = np.zeros(len(items))
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            logits = model(normalize_uint8(torch.stack([items[i] for i in chunk])).to(device))
            p[chunk] = torch.sigmoid(logits.float()).cpu().numpy()
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
