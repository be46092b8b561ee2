"""Embedding tasks: embed new videos into per-video vector parts, then commit rows and update the index.

Order of writes, so any kill leaves a usable state: (1) each video's part file (atomic);
(2) one catalog transaction adding its `embeddings` rows and `embedded_videos` row;
(3) the FAISS index, replaced atomically. A kill before (2) leaves the catalog and the
index as they were; a kill between (2) and (3) is repaired on the next run, which finds
the index disagreeing with the catalog and rebuilds it from the parts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from speednet.embedding import embed_frames
from speednet.errors import TooShort
from storage import catalog, objects, vector_index
from tasks.score import ModelRef, check_unchanged, load_model, open_model_view


@dataclass(frozen=True)
class EmbedParams:
    """What an index's vectors mean; fixed per model index (change it with ``rebuild``)."""

    stride: int = 8  # frames between window starts (T/2 for the CPU preset)
    dtype: str = "float32"  # of the stored parts: float32 or float16 (half the disk)

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {self.dtype!r}")


@dataclass(frozen=True)
class VideoToEmbed:
    video_id: str
    path: str
    frame_count: int = 0


@task(name="select-unembedded", cache_policy=NO_CACHE)
def select_unembedded(catalog_path: str, model_id: str, params: EmbedParams, retry_failed: bool = False) -> list[VideoToEmbed]:
    """Ingested videos without vectors for ``model_id``; refuses to mix embedding parameters in one index."""
    con = catalog.connect(catalog_path, read_only=True)
    try:
        done = dict(con.execute("SELECT video_id, status FROM embedded_videos WHERE model_id = ?", [model_id]).fetchall())
        used = {p for (p,) in con.execute("SELECT DISTINCT embed_params FROM embedded_videos WHERE model_id = ? "
                                          "AND status = 'embedded'", [model_id]).fetchall()}
        videos = con.execute("SELECT video_id, path, frame_count FROM ingested_videos ORDER BY path").fetchall()
    finally:
        con.close()
    wanted = catalog.canonical_json(dataclasses.asdict(params))
    if used - {wanted}:
        raise ValueError(f"the index of model {model_id} was built with {sorted(used)}, not {wanted}; "
                         f"keep those parameters or pass rebuild=True to re-embed everything")
    return [VideoToEmbed(vid, path, frames) for vid, path, frames in videos
            if vid not in done or (retry_failed and done[vid] == "failed")]


def embed_video(video: VideoToEmbed, model_ref: ModelRef, index_dir: str, params: EmbedParams,
                decode_timeout_s: float = 300.0) -> dict:
    """Embed one video's windows into its part file; failures come back as a row, not an exception."""
    try:
        check_unchanged(video.path, video.video_id)
        model = load_model(model_ref.checkpoint_path)
        view = open_model_view(video.path, model.config.input_size, decode_timeout_s)
        if view.frames < model.config.clip_frames:
            raise TooShort(video.path, f"{view.source_frames} frames; one window needs {model.config.clip_frames} "
                                       f"at {view.timebase.model_fps:g} fps")
        starts, vectors = embed_frames(model, view.read, view.frames, stride=params.stride)
        fps = view.timebase.model_fps  # window times in real time, window starts as source frames
        vector_index.write_part(index_dir, video.video_id, np.floor(view.timebase.source_position(starts)),
                                starts / fps, (starts + model.config.clip_frames) / fps, vectors, params.dtype)
        return {"video_id": video.video_id, "path": video.path, "status": "embedded", "windows": len(starts)}
    except Exception as e:  # bad input (or a bug) is recorded; the run goes on
        return {"video_id": video.video_id, "path": video.path, "status": "failed",
                "error_kind": getattr(e, "kind", "embed_failed"), "error": str(e)}


@task(name="embed-videos", cache_policy=NO_CACHE)
def embed_videos(batch: list[VideoToEmbed], model_ref: ModelRef, index_dir: str, params: EmbedParams,
                 decode_timeout_s: float = 300.0) -> list[dict]:
    """Embed a batch of videos on this worker (the model loads once per worker process) into their part files."""
    return [embed_video(video, model_ref, index_dir, params, decode_timeout_s) for video in batch]


@task(name="commit-embeddings", cache_policy=NO_CACHE)
def commit_embeddings(results: list[dict], model_id: str, index_dir: str, catalog_path: str,
                      params: EmbedParams) -> dict | None:
    """Add the new videos' rows in one transaction (ids continue the model's), then bring the index up to date."""
    directory = index_dir
    # ids follow the paths, not the order workers finished in, so a Dask run numbers vectors as a threaded one does
    embedded = sorted((r for r in results if r["status"] == "embedded"), key=lambda r: r["path"])
    with catalog.writer(catalog_path) as con:
        next_id = con.execute("SELECT coalesce(max(vector_id) + 1, 0) FROM embeddings WHERE model_id = ?",
                              [model_id]).fetchone()[0]
        rows = []
        for result in embedded:
            con.execute("DELETE FROM embeddings WHERE model_id = ? AND video_id = ?", [model_id, result["video_id"]])
            table, _ = vector_index.read_part(vector_index.part_path(directory, result["video_id"]))
            ids = np.arange(next_id, next_id + table.num_rows)
            next_id += table.num_rows
            rows.append(table.append_column("vector_id", [ids]).append_column(
                "video_id", [[result["video_id"]] * table.num_rows]))
        for table in rows:
            con.register("staged_embeddings", table)
            con.execute("INSERT INTO embeddings SELECT vector_id, ?, video_id, start_frame, start_s, end_s "
                        "FROM staged_embeddings", [model_id])
            con.unregister("staged_embeddings")
        embed_params = catalog.canonical_json(dataclasses.asdict(params))
        _upsert_embedded(con, model_id, embed_params, results)
    return sync_index(catalog_path, model_id, index_dir)


def _upsert_embedded(con, model_id: str, embed_params: str, results: list[dict]) -> None:
    for r in results:
        con.execute("DELETE FROM embedded_videos WHERE video_id = ? AND model_id = ?", [r["video_id"], model_id])
        con.execute("INSERT INTO embedded_videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [r["video_id"], model_id, r["path"], r["status"], r.get("error_kind"), r.get("error"),
                     r.get("windows"), embed_params, catalog.utc_now()])


def _catalog_ids(catalog_path: str, model_id: str) -> dict[str, np.ndarray]:
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, list(vector_id ORDER BY start_frame) FROM embeddings WHERE model_id = ? "
                           "GROUP BY video_id", [model_id]).fetchall()
    finally:
        con.close()
    return {vid: np.asarray(ids, dtype=np.int64) for vid, ids in rows}


def sync_index(catalog_path: str, model_id: str, index_dir: str) -> dict | None:
    """Make the saved index hold exactly the catalog's vectors: add the missing ones, or rebuild from the parts.

    Returns the manifest, or None while the model has no vectors at all.
    """
    directory = index_dir
    ids_by_video = _catalog_ids(catalog_path, model_id)
    if not ids_by_video:
        return None
    wanted = np.concatenate(list(ids_by_video.values())) if ids_by_video else np.zeros(0, dtype=np.int64)
    try:
        index, _ = vector_index.load_index(directory, model_id)
    except (FileNotFoundError, ValueError):
        index = None
    if index is not None:
        held = _held_ids(index)
        if held is not None and held.issubset(set(wanted.tolist())):
            missing = [vid for vid, ids in ids_by_video.items() if not set(ids.tolist()) <= held]
            grows_past_flat = vector_index.index_type(index) == "flat" and len(wanted) > vector_index.FLAT_LIMIT
            if not missing:
                return vector_index.read_manifest(directory)
            if not grows_past_flat:
                for vid in missing:
                    _, vectors = vector_index.read_part(vector_index.part_path(directory, vid))
                    vector_index.add_vectors(index, vectors, ids_by_video[vid])
                return vector_index.save_index(directory, index, model_id)
    vectors = [vector_index.read_part(vector_index.part_path(directory, vid))[1] for vid in ids_by_video]
    index = vector_index.build_index(np.concatenate(vectors), wanted)
    return vector_index.save_index(directory, index, model_id)


def _held_ids(index) -> set[int] | None:
    """Ids in an index (None when they cannot be listed cheaply)."""
    import faiss

    if isinstance(index, faiss.IndexIDMap):
        return set(faiss.vector_to_array(index.id_map).tolist())
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    held = set()
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            held.update(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).tolist())
    return held


def drop_model_vectors(catalog_path: str, model_id: str, index_dir: str) -> None:
    """Forget a model's vectors (rows, parts and index), for a rebuild with new parameters."""
    with catalog.writer(catalog_path) as con:
        con.execute("DELETE FROM embeddings WHERE model_id = ?", [model_id])
        con.execute("DELETE FROM embedded_videos WHERE model_id = ?", [model_id])
    objects.delete_tree(index_dir)
