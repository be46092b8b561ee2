"""Parameters that decide what an ingested video's clips look like."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from storage.catalog import canonical_json


@dataclass(frozen=True)
class IngestParams:
    """How clips are cut from a video. Changing any field re-ingests affected videos."""

    short_side_px: int = 128  # decoder-side resize; training crops and rescales from here
    clip_frames: int = 48  # 3T for T=16: room to skip-sample T frames at rates up to ~2.2
    clip_stride_frames: int | None = None  # distance between clip starts; None tiles without overlap
    frame_encoding: str = "jpeg"  # "jpeg" (q90) or "raw" (exact, zstd column, ~7x larger); docs/BENCHMARKS.md

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def params_hash(self) -> str:
        return hashlib.blake2b(canonical_json(self.as_dict()).encode(), digest_size=8).hexdigest()
