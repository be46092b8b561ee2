"""Speediness rows in the catalog: one video's scores replace its old ones in one transaction.

A killed run therefore leaves either all of a video's rows or none, and a re-run simply
writes the video again. Writers are serialized by ``catalog.writer``'s file lock, so two
score runs at once queue at the database instead of corrupting it.

Scoring workers (threads, or Dask workers on other machines) never open the catalog: each
scored video becomes a staged part, one Parquet file of its frame rows carrying its summary
row and segments as metadata, which the flow commits (``commit_part``). A part left by a
killed run is committed by the next run instead of being scored again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage import catalog, objects

_SUMMARY_KEY, _SEGMENTS_KEY = b"speednet.summary", b"speednet.segments"

SCORE_TABLES = ("frame_scores", "video_speediness", "segments")


def frame_score_table(video_id: str, model_id: str, speeds: np.ndarray, p_natural: np.ndarray, fps: float) -> pa.Table:
    """Long-format rows (one per frame and speed) of a video's P_i(t)."""
    p_natural = np.asarray(p_natural, dtype=np.float32)
    n_speeds, n_frames = p_natural.shape
    frames = np.tile(np.arange(n_frames, dtype=np.int32), n_speeds)
    return pa.table({
        "video_id": _constant(video_id, len(frames)),
        "model_id": _constant(model_id, len(frames)),
        "frame": frames,
        "t_seconds": frames / float(fps),
        "speed": np.repeat(np.asarray(speeds, dtype=np.float32), n_frames),
        "p_natural": p_natural.reshape(-1),
    })


def _constant(value: str, n: int) -> pa.DictionaryArray:
    """A string column of n equal values without n Python strings."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


def _delete_video(con, video_id: str, model_id: str) -> None:
    for table in SCORE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE video_id = ? AND model_id = ?", [video_id, model_id])


def write_scored(catalog_path: str | Path, summary_row: dict, frame_rows: pa.Table, segment_rows: list[dict]) -> None:
    """Replace one (video, model)'s rows in all three score tables (and its maps' rows, if any), atomically."""
    summary_row = dict(summary_row)
    map_rows = summary_row.pop("maps", None)
    summary_row.pop("maps_asked", None)
    video_id, model_id = summary_row["video_id"], summary_row["model_id"]
    with catalog.writer(catalog_path) as con:
        _delete_video(con, video_id, model_id)
        if map_rows is not None:  # scored with maps: they replace the ones an earlier scoring made
            con.execute("DELETE FROM speediness_maps WHERE video_id = ? AND model_id = ?", [video_id, model_id])
            upsert_maps(con, map_rows)
        con.register("staged_frame_scores", frame_rows)
        try:
            con.execute("INSERT INTO frame_scores SELECT video_id, model_id, frame, t_seconds, speed, p_natural "
                        "FROM staged_frame_scores")
        finally:
            con.unregister("staged_frame_scores")
        catalog.insert_rows(con, "segments", [{"video_id": video_id, "model_id": model_id, **s} for s in segment_rows])
        catalog.insert_rows(con, "video_speediness", [{**summary_row, "status": "scored", "scored_at": catalog.utc_now()}])


def upsert_maps(con, rows: list[dict]) -> None:
    """Replace these windows' `speediness_maps` rows (inside the caller's transaction)."""
    if rows:
        catalog.upsert(con, "speediness_maps", "(video_id, model_id, at_s, speed, input_size)",
                       [{**row, "created_at": catalog.utc_now()} for row in rows])


def record_maps(catalog_path: str | Path, rows: list[dict]) -> None:
    """Replace these windows' `speediness_maps` rows, in one transaction."""
    with catalog.writer(catalog_path) as con:
        upsert_maps(con, rows)


def part_path(staging: str | Path, video_id: str, model_id: str, score_params: str) -> str:
    """Where one (video, model, scoring parameters)'s staged scores wait for the flow's commit (a path or URI)."""
    params_key = hashlib.sha256(score_params.encode()).hexdigest()[:12]
    return objects.join(staging, f"{video_id}-{model_id[:16]}-{params_key}.parquet")


def write_part(path: str | Path, summary_row: dict, frame_rows: pa.Table, segment_rows: list[dict]) -> str:
    """Stage one video's scores as a Parquet file (frame rows; summary and segments as metadata), atomically."""
    metadata = {**(frame_rows.schema.metadata or {}), _SUMMARY_KEY: json.dumps(summary_row),
                _SEGMENTS_KEY: json.dumps(segment_rows)}
    return objects.write_parquet(path, frame_rows.replace_schema_metadata(metadata))


def read_part_summary(path: str | Path) -> dict:
    """The summary row of a staged part, read from its footer alone."""
    return json.loads(objects.read_schema(path).metadata[_SUMMARY_KEY])


def commit_part(catalog_path: str | Path, path: str | Path) -> dict | None:
    """Replace the video's rows with a staged part's in one transaction, then delete the part; its summary row.

    None when the part is gone: another run scoring the same video at the same time staged
    the same part and committed it first.
    """
    try:
        table = objects.read_table(path)
    except FileNotFoundError:
        return None
    metadata = table.schema.metadata
    summary_row, segment_rows = json.loads(metadata[_SUMMARY_KEY]), json.loads(metadata[_SEGMENTS_KEY])
    write_scored(catalog_path, summary_row, table.replace_schema_metadata(None), segment_rows)
    objects.delete(path)
    return summary_row


def write_failed(catalog_path: str | Path, video_id: str, model_id: str, path: str, error_kind: str, error: str,
                 score_params: str) -> None:
    """Record that a video could not be scored (and drop any rows of an earlier attempt)."""
    with catalog.writer(catalog_path) as con:
        _delete_video(con, video_id, model_id)
        catalog.insert_rows(con, "video_speediness", [{
            "video_id": video_id, "model_id": model_id, "path": path, "status": "failed", "error_kind": error_kind,
            "error": error, "score_params": score_params, "scored_at": catalog.utc_now()}])




def scored_pairs(catalog_path: str | Path, model_id: str) -> dict[str, str]:
    """video_id -> status ('scored' or 'failed') of every video already handled by ``model_id``."""
    if not Path(catalog_path).exists():
        return {}
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, status FROM video_speediness WHERE model_id = ?", [model_id]).fetchall()
    finally:
        con.close()
    return dict(rows)


@dataclass(frozen=True)
class StoredScores:
    """A video's P_i(t) as the score tables hold it."""

    speeds: np.ndarray  # (L,)
    p_natural: np.ndarray  # (L, N)
    fps: float



def stored_scores(catalog_path: str | Path, video_id: str, model_id: str) -> StoredScores | None:
    """P_i(t) of a scored (video, model) from `frame_scores`, or None when it has no scores."""
    if not Path(catalog_path).exists():
        return None
    con = catalog.connect(catalog_path, read_only=True)
    try:
        summary = con.execute("SELECT fps FROM video_speediness WHERE video_id = ? AND model_id = ? AND status = 'scored'",
                              [video_id, model_id]).fetchone()
        if summary is None:
            return None
        rows = con.execute("SELECT speed, p_natural FROM frame_scores WHERE video_id = ? AND model_id = ? "
                           "ORDER BY speed, frame", [video_id, model_id]).fetchnumpy()
    finally:
        con.close()
    speeds, counts = np.unique(rows["speed"], return_counts=True)
    if not len(speeds) or np.any(counts != counts[0]):
        raise ValueError(f"frame_scores of video {video_id} by model {model_id[:12]} are incomplete "
                         f"({counts.tolist()} frames per speed); re-score it with score-library (retry_failed)")
    return StoredScores(speeds.astype(np.float64), rows["p_natural"].reshape(len(speeds), -1), float(summary[0]))
