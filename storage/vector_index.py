"""Clip vectors on disk: one Parquet part per video (the truth) and a FAISS index per model (derived).

Layout under ``<data root>/index/<model_id>/`` (a folder, or a prefix on object storage)::

    vectors/<video_id>.parquet   start_frame, start_s, end_s, vector (float32 or float16)
    index.faiss                  loads with plain ``faiss.read_index``; ids = embeddings.vector_id
    manifest.json                model_id, count, index_type, dim, nprobe, version, created_at, updated_at

The index is replaced atomically (temp file + rename), so a killed run leaves the previous
one intact. Because the parts hold every vector, an index that disagrees with the
catalog's `embeddings` rows (a kill between the two) is rebuilt from them.

Index type by size (bench/retrieval.py, docs/BENCHMARKS.md): exact inner product
(``IndexFlatIP`` in an ``IndexIDMap2``) up to FLAT_LIMIT vectors, where a 256-d query still
takes under 2 ms on 2 cores (1.2 ms at 10k, 10 ms at 100k);
above it an IVF index with 4·√N lists (the low end of FAISS's guide, so training stays in
minutes on 2 cores), trained on a sample of the data when it crosses the limit.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from storage import objects

INDEX_FILE, MANIFEST_FILE, PARTS_DIR = "index.faiss", "manifest.json", "vectors"
FLAT_LIMIT = 15_000
IVF_NPROBE = 16
IVF_TRAIN_PER_LIST = 64  # FAISS warns below 39 training points per centroid


def index_dir(root: str | Path, model_id: str) -> str:
    """Where a model's vectors and index live, under a data root (``storage.paths.data_root``)."""
    return objects.join(root, "index", model_id)


def part_path(directory: str | Path, video_id: str) -> str:
    return objects.join(directory, PARTS_DIR, f"{video_id}.parquet")


def write_part(directory: str | Path, video_id: str, start_frames: np.ndarray, start_s: np.ndarray, end_s: np.ndarray,
               vectors: np.ndarray, dtype: str = "float32") -> str:
    """One video's window vectors as Parquet, written atomically (float16 halves the size).

    ``start_frames`` are source frames; ``start_s``/``end_s`` the window's real-time span.
    """
    vectors = np.asarray(vectors, dtype=np.float16 if dtype == "float16" else np.float32)
    flat = pa.array(vectors.reshape(-1))
    table = pa.table({
        "start_frame": np.asarray(start_frames, dtype=np.int32),
        "start_s": np.asarray(start_s, dtype=np.float64),
        "end_s": np.asarray(end_s, dtype=np.float64),
        "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
    })
    return objects.write_parquet(part_path(directory, video_id), table)


def read_part(path: str | Path) -> tuple[pa.Table, np.ndarray]:
    """(start_frame/start_s/end_s table, (N, D) float32 vectors) of one video's part."""
    table = objects.read_table(path)
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return table.drop(["vector"]), vectors


def _ivf_lists(n: int) -> int:
    return max(1, min(int(4 * math.sqrt(n)), n // IVF_TRAIN_PER_LIST))


def build_index(vectors: np.ndarray, ids: np.ndarray, kind: str = "auto", *, hnsw_m: int = 32) -> faiss.Index:
    """A new inner-product index holding ``vectors`` under ``ids``: flat, ivf or hnsw ('auto' picks by size)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    dim = vectors.shape[1]
    if kind == "auto":
        kind = "flat" if len(vectors) <= FLAT_LIMIT else "ivf"
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, _ivf_lists(len(vectors)), faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), index.nlist * IVF_TRAIN_PER_LIST),
                                                 replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = IVF_NPROBE
    elif kind == "hnsw":
        index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT))
    else:
        raise ValueError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def index_type(index: faiss.Index) -> str:
    """'flat', 'ivf' or 'hnsw'."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """``index`` with ``vectors`` added; a flat index that grows past FLAT_LIMIT must be rebuilt by the caller."""
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return index


def save_index(directory: str | Path, index: faiss.Index, model_id: str) -> dict:
    """Write index then manifest, each atomically; returns the manifest."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    old = read_manifest(directory)
    manifest = {"model_id": model_id, "count": int(index.ntotal), "index_type": index_type(index), "dim": int(index.d),
                "nprobe": IVF_NPROBE if index_type(index) == "ivf" else None,
                "version": secrets.token_hex(8),  # names this save (a cached copy of an older one is not reused)
                "created_at": (old or {}).get("created_at", now), "updated_at": now}
    with objects.staging_file(objects.join(directory, INDEX_FILE)) as tmp:
        faiss.write_index(index, str(tmp))
    objects.write_bytes(objects.join(directory, MANIFEST_FILE), json.dumps(manifest, indent=1).encode())
    return manifest


def read_manifest(directory: str | Path) -> dict | None:
    try:
        return json.loads(objects.read_bytes(objects.join(directory, MANIFEST_FILE)))
    except FileNotFoundError:
        return None


def load_index(directory: str | Path, model_id: str) -> tuple[faiss.Index, dict]:
    """The saved index of ``model_id`` and its manifest, with clear errors when it is missing or another model's."""
    manifest = read_manifest(directory)
    if manifest is None or not objects.exists(objects.join(directory, INDEX_FILE)):
        raise FileNotFoundError(f"no vector index for model {model_id} in {directory}; "
                                f"run the embed-library flow (`speednet embed-library`) first")
    if manifest["model_id"] != model_id:
        raise ValueError(f"the index in {directory} was built by model {manifest['model_id']}, not {model_id}; "
                         f"re-run embed-library for this model")
    local = objects.local_copy(objects.join(directory, INDEX_FILE), version=manifest.get("version"))
    index = faiss.read_index(str(local))
    if index.ntotal != manifest["count"]:
        raise ValueError(f"{directory}: the index holds {index.ntotal} vectors but its manifest says {manifest['count']}; "
                         f"re-run embed-library to rebuild it")
    if manifest.get("nprobe"):
        faiss.extract_index_ivf(index).nprobe = manifest["nprobe"]
    return index, manifest
