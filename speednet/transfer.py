"""What SpeedNet's features know beyond speed: a linear probe on frozen embeddings, and a short fine-tune.

The paper uses SpeedNet as self-supervised pre-training for action recognition and
compares it with the same network trained from random init. Here both measures take
clips with class labels, already split by video (never a video on both sides), and
report clip accuracy and video accuracy (a video's clips vote by their mean logits).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from speednet.embedding import embed_clips
from speednet.model import SpeedNet, normalize_uint8


@dataclass(frozen=True)
class Labelled:
    """Clips (N, T, H, W, 3) uint8 of one side of a split, with their class and video."""

    clips: np.ndarray
    labels: np.ndarray  # (N,) int class index
    videos: np.ndarray  # (N,) int video index


def accuracies(logits: np.ndarray, data: Labelled) -> tuple[float, float]:
    """(clip accuracy, video accuracy: each video's clips vote by their mean logits)."""
    clip_acc = float((logits.argmax(1) == data.labels).mean())
    right = []
    for video in np.unique(data.videos):
        mine = data.videos == video
        right.append(logits[mine].mean(0).argmax() == data.labels[mine][0])
    return clip_acc, float(np.mean(right))


def linear_probe(model: SpeedNet, train: Labelled, test: Labelled, *, classes: int, weight_decay: float = 1e-3,
                 steps: int = 300, seed: int = 0) -> tuple[float, float]:
    """Logistic regression on the frozen clip embeddings (``SpeedNet.embed``); (clip, video) accuracy on ``test``."""
    torch.manual_seed(seed)
    x_train, x_test = _embedded(model, train.clips), _embedded(model, test.clips)
    # standardised on the training clips; a unit constant there (a dead one) is not blown up on the test clips
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-3)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    probe = torch.nn.Linear(x_train.shape[1], classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    y = torch.from_numpy(train.labels).long()

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x_train), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return accuracies(probe(x_test).numpy(), test)


def _embedded(model: SpeedNet, clips: np.ndarray, batch_size: int = 32) -> torch.Tensor:
    """Clip embeddings on the CPU, computed a batch at a time (a folder's clips need not fit on the device)."""
    return torch.from_numpy(np.concatenate([embed_clips(model, clips[i:i + batch_size])
                                            for i in range(0, len(clips), batch_size)]))


class _Classifier(torch.nn.Module):
    """The SpeedNet backbone (its pooled feature) under a new linear layer of ``classes`` outputs."""

    def __init__(self, model: SpeedNet, classes: int):
        super().__init__()
        self.backbone = model
        self.fc = torch.nn.Linear(model.embed_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone.embed(x))


def fine_tune(model: SpeedNet, train: Labelled, test: Labelled, *, classes: int, steps: int = 100, batch_size: int = 16,
              lr: float = 1e-3, seed: int = 0) -> tuple[float, float]:
    """Train a copy of the whole network with a new classifier for ``steps``; (clip, video) accuracy on ``test``.

    AdamW with a cosine schedule; batches are drawn from ``train`` with random horizontal
    flips. ``model`` itself is left as it was.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    net = _Classifier(copy.deepcopy(model), classes).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    net.train()
    for _ in range(steps):
        pick = rng.choice(len(train.clips), size=min(batch_size, len(train.clips)), replace=False)
        clips = train.clips[pick]
        if rng.random() < 0.5:
            clips = clips[:, :, :, ::-1]
        loss = F.cross_entropy(net(normalize_uint8(np.ascontiguousarray(clips)).to(device)),
                               torch.from_numpy(train.labels[pick]).long().to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(normalize_uint8(test.clips[i:i + 32]).to(device)).float().cpu()
                            for i in range(0, len(test.clips), 32)])
    return accuracies(logits.numpy(), test)
