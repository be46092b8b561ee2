"""transfer-eval tasks: a labelled folder's ingested videos → split by video → clips → probe and fine-tune.

A labelled folder has one subfolder per class (``folder/<class>/…/video.mp4``); files
directly in it have no class and are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from speednet.model import random_init_like
from speednet.sampling import resize_short_side
from speednet.transfer import Labelled, fine_tune, linear_probe
from storage import catalog
from storage.shards import iter_clips


@dataclass(frozen=True)
class LabelledVideo:
    video_id: str
    path: str
    shard_path: str
    label: str


@dataclass(frozen=True)
class TransferParams:
    """Everything that decides a transfer evaluation's numbers (with the videos and the model)."""

    test_fraction: float = 0.3
    clips_per_video: int = 4
    probe_steps: int = 300
    finetune_steps: int = 60
    finetune_lr: float = 1e-3
    seed: int = 0


def labelled_videos(catalog_path: str, library: str) -> list[LabelledVideo]:
    """Ingested videos under ``library`` with their class: the first folder below it."""
    root = Path(library).expanduser().resolve()
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, path, shard_path FROM ingested_videos ORDER BY path").fetchall()
    finally:
        con.close()
    found = []
    for video_id, path, shard in rows:
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            continue
        if len(parts) >= 2:
            found.append(LabelledVideo(video_id, path, shard, parts[0]))
    return found


def split_by_video(videos: list[LabelledVideo], test_fraction: float, seed: int) -> tuple[list, list]:
    """(train, test) videos: per class, a seeded ``test_fraction`` (at least one) tested, the rest (at least one) trained."""
    by_class: dict[str, list[LabelledVideo]] = {}
    for video in videos:
        by_class.setdefault(video.label, []).append(video)
    if len(by_class) < 2:
        raise ValueError(f"found {len(by_class)} class folder(s) with ingested videos; a labelled folder needs at least "
                         "two subfolders (one per class) of videos")
    small = sorted(label for label, members in by_class.items() if len(members) < 2)
    if small:
        raise ValueError(f"classes {small} have fewer than 2 ingested videos; each class needs one to train on and "
                         "one to test on")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted(by_class):
        members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        test += members[:n_test]
        train += members[n_test:]
    return train, test


def load_labelled(videos: list[LabelledVideo], classes: list[str], clip_frames: int, size: int,
                  clips_per_video: int) -> Labelled:
    """Up to ``clips_per_video`` clips of each video: its first ``clip_frames`` frames (natural speed), the
    centre square at ``size`` px, so clips of any frame shape stack."""
    clips, labels, owners = [], [], []
    by_shard: dict[str, list[int]] = {}
    for i, video in enumerate(videos):
        by_shard.setdefault(video.shard_path, []).append(i)
    for shard, members in sorted(by_shard.items()):
        index_of = {videos[i].video_id: i for i in members}
        taken = dict.fromkeys(index_of, 0)
        for clip in iter_clips(shard, video_ids=list(index_of)):
            if taken[clip.video_id] >= clips_per_video or len(clip.frames) < clip_frames:
                continue
            taken[clip.video_id] += 1
            frames = resize_short_side(clip.frames[:clip_frames], size).numpy()
            top, left = (frames.shape[1] - size) // 2, (frames.shape[2] - size) // 2
            clips.append(frames[:, top:top + size, left:left + size])
            labels.append(classes.index(videos[index_of[clip.video_id]].label))
            owners.append(index_of[clip.video_id])
    if not clips:
        raise ValueError(f"no stored clip of these videos has the model's {clip_frames} frames; the videos may be "
                         "shorter than one clip (see the ingest_failures view)")
    return Labelled(np.stack(clips), np.asarray(labels), np.asarray(owners))


def run_id(library: str, videos: list[LabelledVideo], model_id: str, params: TransferParams) -> str:
    """Names one evaluation: the same folder contents, model and settings give the same id (and replace its rows)."""
    identity = [str(Path(library).expanduser().resolve()), sorted(v.video_id for v in videos), model_id,
                dataclasses.asdict(params)]
    return hashlib.blake2b(json.dumps(identity).encode(), digest_size=8).hexdigest()


@task(name="evaluate-transfer", cache_policy=NO_CACHE)
def evaluate_transfer(pretrained, train: Labelled, test: Labelled, classes: list[str], params: TransferParams) -> list[dict]:
    """Linear probe and fine-tune of the pre-trained network and of the same architecture at random init."""
    import torch

    torch.manual_seed(params.seed)
    random_init = random_init_like(pretrained).to(next(pretrained.parameters()).device)
    rows = []
    for init, model in (("pretrained", pretrained), ("random", random_init)):
        probe = linear_probe(model, train, test, classes=len(classes), steps=params.probe_steps, seed=params.seed)
        tuned = fine_tune(model, train, test, classes=len(classes), steps=params.finetune_steps, lr=params.finetune_lr,
                          seed=params.seed)
        for method, (clip_acc, video_acc) in (("linear_probe", probe), ("fine_tune", tuned)):
            rows.append({"init": init, "method": method, "clip_accuracy": clip_acc, "video_accuracy": video_acc})
    return rows
