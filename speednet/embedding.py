"""Clip embeddings: the SpeedNet backbone's pooled feature of T-frame windows, for retrieval.

The paper shows this space-time feature retrieves similar motion within and across
videos. Windows slide at natural speed over the whole video; frames arrive in bounded
chunks as in scoring, and vectors leave L2-normalised so inner product = cosine.
No I/O and no index here (storage/vector_index.py holds the FAISS side).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from speednet.model import SpeedNet, normalize_uint8
from speednet.scoring import FrameBuffer


def window_starts(n_frames: int, clip_frames: int, stride: int) -> np.ndarray:
    """First frame of every T-frame window at ``stride``; empty when the video is shorter than T."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return np.arange(0, n_frames - clip_frames + 1, stride, dtype=np.int64) if n_frames >= clip_frames else \
        np.zeros(0, dtype=np.int64)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@torch.no_grad()
def embed_clips(model: SpeedNet, clips: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """(N, T, H, W, 3) uint8 clips → (N, D) unit vectors of the pooled backbone feature."""
    device = next(model.parameters()).device
    model.eval()
    x = normalize_uint8(np.stack(clips) if isinstance(clips, list) else clips).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        features = model.embed(x).float()
    return l2_normalize(features.cpu().numpy())


def embed_frames(model: SpeedNet, read: Callable[[int, int], np.ndarray], n_frames: int, *, stride: int,
                 batch_size: int = 32, chunk_frames: int = 512,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(window start frames (W,), unit vectors (W, D)) of a whole video, reading each frame once."""
    T = model.config.clip_frames
    starts = window_starts(n_frames, T, stride)
    buffer = FrameBuffer(read, n_frames, chunk_frames)
    vectors, batch = [], []
    for i, start in enumerate(starts):
        buffer.trim(int(start))
        buffer.ensure(int(start) + T - 1)
        batch.append(buffer.take(np.arange(start, start + T)))
        if len(batch) == batch_size or i == len(starts) - 1:
            vectors.append(embed_clips(model, batch))
            batch = []
            if on_progress:
                on_progress(i + 1, len(starts))
    dim = model.embed_dim
    return starts, (np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32))
