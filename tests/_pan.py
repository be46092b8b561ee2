"""A task a CPU model learns in a minute: textures panning at a known natural speed.

Every training clip pans at about PAN_PX px/frame, so after a few dozen real training
steps the model calls ~PAN_PX natural and ~2·PAN_PX sped up. Videos that change speed
half way give scoring tests a known right answer. The tests load one such model from
``data/pan_model.pt`` (``python tests/_pan.py`` writes it), so they see the same weights on
every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from speednet.ffmpeg import VideoWriter
from speednet.model import SpeedNet, build_speednet, save_checkpoint
from speednet.sampling import AugmentConfig, make_batch
from tasks.trainer import calibrate_threshold

PAN_PX = 1.5  # natural pan speed, px per frame at the model's 64 px input
HEIGHT, WIDTH = 64, 96
PAN_MODEL = Path(__file__).resolve().parent / "data" / "pan_model.pt"  # train_pan_model(60, seed=1), by this file's main


def texture(rng: np.random.Generator, width: int) -> np.ndarray:
    """A smooth random colour texture, HEIGHT × width × 3 uint8."""
    t = ndimage.gaussian_filter(rng.random((HEIGHT, width, 3)), sigma=(2, 2, 0))
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def pan(tex: np.ndarray, px_per_frame: np.ndarray) -> np.ndarray:
    """Frames of a WIDTH-wide view sliding over ``tex``, moving px_per_frame[i] before frame i+1."""
    x0 = np.r_[0.0, np.cumsum(px_per_frame)[:-1]]
    cols = np.arange(WIDTH)
    frames = []
    for x in x0:
        pos = x + cols
        lo = np.floor(pos).astype(int)
        a = (pos - lo)[None, :, None]
        frames.append(((1 - a) * tex[:, lo] + a * tex[:, lo + 1]).astype(np.uint8))
    return np.stack(frames)


def write_pan_video(path: Path, speeds: list[float], frames_each: int, seed: int = 0, fps: int = 25) -> Path:
    """An H.264 file panning at PAN_PX × speeds[k] for frames_each frames per entry (e.g. [1, 2]: natural then 2x)."""
    rng = np.random.default_rng(seed)
    steps = np.concatenate([np.full(frames_each, PAN_PX * s) for s in speeds])
    tex = texture(rng, int(steps.sum()) + WIDTH + 2)
    with VideoWriter(path, fps=fps, width=WIDTH, height=HEIGHT, crf=18) as out:
        out.write(pan(tex, steps))
    return path


def train_pan_model(steps: int = 60, seed: int = 0) -> SpeedNet:
    """A CPU-preset SpeedNet trained for ``steps`` real steps on panning textures (eval mode)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips = [pan(texture(rng, 48 * 2 + WIDTH + 2), np.full(48, PAN_PX * rng.uniform(0.85, 1.15))) for _ in range(32)]
    model = build_speednet(preset="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    augment = AugmentConfig(spatial_aug=False)
    model.train()
    for _ in range(steps):
        x, y = make_batch([clips[i] for i in rng.choice(len(clips), 8, replace=False)], model.config, rng, augment)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # As train-speednet ends every run: the cut between exact 1x and 2x fitted on fresh clips,
    # so P = 0.5 lies between PAN_PX and 2·PAN_PX however the few steps left the bias.
    calibration = [pan(texture(rng, 48 * 2 + WIDTH + 2), np.full(48, PAN_PX)) for _ in range(16)]
    calibrate_threshold(model.eval(), calibration)
    return model


if __name__ == "__main__":
    # The stored model the tests load (the pan_model fixture): seed 1 passed every test that uses it.
    PAN_MODEL.parent.mkdir(exist_ok=True)
    print(save_checkpoint(PAN_MODEL, train_pan_model(steps=60, seed=1)))
