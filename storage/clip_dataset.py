"""Stream clips out of Parquet shards for training, split across loader workers and ranks.

The unit of work is one row group of one shard (~64 MiB of frames): each (rank, worker)
pair reads a disjoint, seeded-shuffled subset of units, so no clip is read twice per pass
and memory stays at about one row group per worker. Only clips of the selected videos are
kept (the train/val split is by video, never by clip).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from storage import objects
from storage.shards import decode_frames


@dataclass(frozen=True)
class ClipSource:
    """Where clips of the selected videos live: shard path -> the video ids to read from it."""

    videos_by_shard: dict[str, frozenset[str]]

    def units(self) -> list[tuple[str, int]]:
        """(shard, row group) pairs holding at least one selected video, in a stable order.

        Decided from the row groups' video_id min/max statistics (footer only, no data read),
        so no reader is dealt row groups without a selected clip and spins on them forever.
        """
        units = []
        for shard in sorted(self.videos_by_shard):
            file, ids = objects.parquet_file(shard), sorted(self.videos_by_shard[shard])
            column = file.schema_arrow.get_field_index("video_id")
            units += [(shard, group) for group in range(file.metadata.num_row_groups)
                      if _may_hold(file.metadata.row_group(group).column(column).statistics, ids)]
        return units


def _may_hold(stats: pq.Statistics | None, ids: list[str]) -> bool:
    """Whether a row group with these video_id statistics may hold one of ``ids`` (sorted); yes without any."""
    if stats is None or not stats.has_min_max:
        return True
    first = bisect.bisect_left(ids, stats.min)  # the smallest selected id not below the group's smallest
    return first < len(ids) and ids[first] <= stats.max


def split_units(units: list, *, rank: int, world_size: int, worker: int, num_workers: int) -> list:
    """The units this (rank, worker) reads: every (world_size·num_workers)-th, disjoint across all."""
    stride = world_size * num_workers
    return units[rank * num_workers + worker::stride]


def read_unit(shard: str, group: int, video_ids: frozenset[str]) -> list[np.ndarray]:
    """Frames (N, H, W, 3) uint8 of every selected clip in one row group."""
    table = objects.parquet_file(shard).read_row_group(group, columns=["video_id", "height", "width", "encoding", "frames"])
    clips = []
    for row in table.to_pylist():
        if row["video_id"] in video_ids:
            clips.append(decode_frames(row["frames"], row["encoding"], row["height"], row["width"]))
    return clips


class ShardClipBatches(IterableDataset):
    """Endless (or one-pass) stream of training batches built from shard clips.

    ``make_batch(clips, rng=...)`` turns a list of clips into model inputs (e.g. the
    same-batch skip-sampled pair); it runs inside the loader workers so augmentation
    never stalls the training step.
    """

    def __init__(self, source: ClipSource, *, clips_per_batch: int, make_batch: Callable, seed: int,
                 rank: int = 0, world_size: int = 1, endless: bool = True, shuffle_buffer: int = 64):
        self.source, self.clips_per_batch, self.make_batch = source, clips_per_batch, make_batch
        self.seed, self.rank, self.world_size, self.endless = seed, rank, world_size, endless
        self.shuffle_buffer = shuffle_buffer

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        all_units = self.source.units()
        mine = split_units(all_units, rank=self.rank, world_size=self.world_size, worker=worker, num_workers=num_workers)
        if not mine:  # more readers than units: share them rather than idle (disjointness needs more shards)
            mine = all_units[(self.rank * num_workers + worker) % len(all_units):][:1]
        rng = random.Random(f"{self.seed}-{self.rank}-{worker}")
        np_rng = np.random.default_rng(rng.randrange(2**32))
        buffer: list[np.ndarray] = []
        fill = max(self.shuffle_buffer, self.clips_per_batch)
        while True:
            order = list(mine)
            rng.shuffle(order)
            for shard, group in order:
                buffer += read_unit(shard, group, self.source.videos_by_shard[shard])
                while len(buffer) >= fill:  # draw batches from a shuffled pool spanning several row groups
                    rng.shuffle(buffer)
                    batch, buffer = buffer[: self.clips_per_batch], buffer[self.clips_per_batch:]
                    yield self.make_batch(batch, rng=np_rng)
            if not self.endless:
                while len(buffer) >= self.clips_per_batch:
                    batch, buffer = buffer[: self.clips_per_batch], buffer[self.clips_per_batch:]
                    yield self.make_batch(batch, rng=np_rng)
                return


def seed_worker(worker_id: int) -> None:
    """Give each loader worker its own torch seed (numpy/random seeds are derived in the dataset)."""
    torch.manual_seed(torch.initial_seed() % 2**31 + worker_id)
