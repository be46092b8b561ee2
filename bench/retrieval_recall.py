"""Retrieval as in the paper: recall@k of same-class neighbours across videos, from a FAISS index.

Classes are the physics scene types (bounce, pendulum, slide, spring); each video is a
fresh scene of a seed no training draws, drawn at 16:9 with a 64 px short side, cut into
16-frame windows. Every window queries an exact inner-product index of all windows
(storage.vector_index, as embed-library builds it); its own video's windows are skipped,
and recall@k is the share of queries with at least one same-class window among the k
nearest (the paper's protocol on UCF101). Three features: the trained model's clip
embedding, the same network at random init, and a histogram of optical-flow magnitudes
(the mean-flow baseline's signal, as a vector).

    OMP_WAIT_POLICY=passive .venv/bin/python bench/retrieval_recall.py --videos-per-class 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.embedding import embed_clips, l2_normalize  # noqa: E402
from speednet.model import load_checkpoint, random_init_like  # noqa: E402
from speednet.optical_flow import dense_flow, to_gray  # noqa: E402
from speednet.synthetic.library import render_frames  # noqa: E402
from speednet.synthetic.scenes import SCENE_TYPES, sample_scene  # noqa: E402
from storage.vector_index import build_index  # noqa: E402

RETRIEVAL_SEED = 7_000_004  # no training or evaluation stream draws it
KS = (1, 5, 10, 20, 50)
PAPER_UCF101 = (13.0, 28.1, 37.5, 49.5, 65.0)


def windows_of(video: int, scene_type: str, clip_frames: int, per_video: int) -> list[np.ndarray]:
    """``per_video`` consecutive windows of a fresh scene of ``scene_type`` (T, 64, 114, 3) uint8."""
    rng = np.random.default_rng([RETRIEVAL_SEED, SCENE_TYPES.index(scene_type), video])
    scene = sample_scene(rng, width=114, height=64, scene_type=scene_type, duration_s=(6.0, 8.0))
    frames = np.concatenate(list(render_frames(scene)))
    start = int(rng.integers(0, max(1, len(frames) - per_video * clip_frames)))
    return [frames[start + i * clip_frames: start + (i + 1) * clip_frames] for i in range(per_video)]


def flow_histogram(window: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Normalised histogram of per-pixel optical-flow magnitudes over a window (px/frame at 64 px)."""
    gray = to_gray(window, 64)
    flow = dense_flow(gray[:-1], gray[1:])
    counts, _ = np.histogram(np.hypot(flow[..., 0], flow[..., 1]), bins=bins)
    return counts.astype(np.float32)


def recall_at(vectors: np.ndarray, videos: np.ndarray, labels: np.ndarray, ks=KS) -> list[float]:
    """Recall@k over every window as a query, neighbours from other videos only."""
    index = build_index(vectors, np.arange(len(vectors)), "flat")
    per_video = int(np.bincount(videos).max())
    _, found = index.search(np.ascontiguousarray(vectors, dtype=np.float32), max(ks) + per_video)
    hits = np.zeros((len(vectors), len(ks)), bool)
    for q, row in enumerate(found):
        others = [i for i in row if i >= 0 and videos[i] != videos[q]][: max(ks)]
        same = labels[others] == labels[q]
        hits[q] = [same[:k].any() for k in ks]
    return (100 * hits.mean(axis=0)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/reference.pt")
    parser.add_argument("--videos-per-class", type=int, default=30)
    parser.add_argument("--windows-per-video", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    trained, _, _ = load_checkpoint(args.checkpoint)
    random_init = random_init_like(trained)
    T = trained.config.clip_frames
    started = time.perf_counter()
    windows, videos, labels = [], [], []
    for label, scene_type in enumerate(SCENE_TYPES):
        for video in range(args.videos_per_class):
            for window in windows_of(video, scene_type, T, args.windows_per_video):
                windows.append(window)
                videos.append(label * args.videos_per_class + video)
                labels.append(label)
    videos, labels = np.asarray(videos), np.asarray(labels)
    print(f"{len(windows)} windows of {len(set(videos))} videos, {len(SCENE_TYPES)} classes "
          f"({', '.join(SCENE_TYPES)}), seed {RETRIEVAL_SEED}; drawn in {time.perf_counter() - started:.0f} s")

    def embed(model) -> np.ndarray:
        return np.concatenate([embed_clips(model, windows[i:i + 32]) for i in range(0, len(windows), 32)])

    bins = np.r_[np.linspace(0, 4, 17), np.inf]
    features = {
        "SpeedNet (reference model)": embed(trained),
        "same network, random init": embed(random_init),
        "optical-flow magnitude histogram": l2_normalize(np.stack([flow_histogram(w, bins) for w in windows])),
    }
    chance = [100 * (1 - (1 - 1 / len(SCENE_TYPES)) ** k) for k in KS]
    print("| feature | " + " | ".join(f"R@{k}" for k in KS) + " |")
    print("|---|" + "---|" * len(KS))
    for name, vectors in features.items():
        print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in recall_at(vectors, videos, labels)) + " |")
    print("| chance (independent draws of 4 balanced classes) | " + " | ".join(f"{c:.1f}" for c in chance) + " |")
    print("| paper: SpeedNet S3D-G on UCF101 (101 classes) | " + " | ".join(f"{r:.1f}" for r in PAPER_UCF101) + " |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
