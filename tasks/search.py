"""Retrieval for analysts: the windows most similar to a query, with where they are and how fast they look.

``search(...) -> list[Hit]`` is the Python API; `speednet search` is a thin layer over it.
A query is a moment of an embedded video (``video`` + ``at_s``), a clip file (embedded on
the fly with the same model), or a vector id. Results can be kept to other videos
(``scope='across'``) or to the query's own video (``scope='within'``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from speednet.embedding import embed_frames, l2_normalize
from speednet.media import content_hash
from storage import catalog, paths, vector_index
from tasks.score import load_model, open_model_view, resolve_model

MAX_K = 1000


@dataclass(frozen=True)
class Hit:
    """One retrieved window."""

    rank: int
    vector_id: int
    video_id: str
    path: str
    start_s: float
    end_s: float
    similarity: float  # cosine similarity to the query, in [-1, 1]
    speediness: float | None  # mean V(t) over the window by the same model, None if not scored

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Query:
    vector: np.ndarray
    video_id: str | None
    vector_id: int | None


def _video_id_of(con, video: str) -> str:
    """A video_id from an id, a prefix of one, or a path of an ingested file."""
    rows = con.execute("SELECT video_id FROM videos WHERE video_id LIKE ? || '%' OR (path = ? AND missing_since IS NULL)",
                       [video, str(Path(video).expanduser().resolve()) if Path(video).exists() else video]).fetchall()
    if not rows and Path(video).is_file():
        rows = con.execute("SELECT video_id FROM videos WHERE video_id = ?", [content_hash(video)]).fetchall()
    if len(rows) != 1:
        raise ValueError(f"unknown video {video!r}: give a video_id (or a unique prefix) or the path of an ingested file"
                         if not rows else f"video {video!r} matches {len(rows)} videos; give more of its id")
    return rows[0][0]


def _vector_of(directory: str, video_id: str, row: int) -> np.ndarray:
    _, vectors = vector_index.read_part(vector_index.part_path(directory, video_id))
    return vectors[row]


def _query(con, directory: str, model_id: str, *, video, at_s, clip, vector_id, data_home) -> _Query:
    given = [video is not None, clip is not None, vector_id is not None]
    if sum(given) != 1:
        raise ValueError("give exactly one query: a video with a time (video + at_s), a clip file, or a vector id")
    if vector_id is not None:
        row = con.execute("SELECT video_id, start_frame FROM embeddings WHERE model_id = ? AND vector_id = ?",
                          [model_id, int(vector_id)]).fetchone()
        if row is None:
            raise ValueError(f"no vector {vector_id} in the index of model {model_id[:12]}")
        rank = con.execute("SELECT count(*) FROM embeddings WHERE model_id = ? AND video_id = ? AND start_frame < ?",
                           [model_id, row[0], row[1]]).fetchone()[0]
        return _Query(_vector_of(directory, row[0], rank), row[0], int(vector_id))
    if video is not None:
        if at_s is None:
            raise ValueError("a video query needs a time: at_s (seconds from the start)")
        video_id = _video_id_of(con, video)
        duration = con.execute("SELECT duration_s FROM videos WHERE video_id = ?", [video_id]).fetchone()[0]
        if not 0 <= at_s <= duration:
            raise ValueError(f"time {at_s} s is outside the video (0–{duration:.2f} s)")
        windows = con.execute("SELECT vector_id, start_s, end_s FROM embeddings WHERE model_id = ? AND video_id = ? "
                              "ORDER BY start_frame", [model_id, video_id]).fetchall()
        if not windows:
            raise ValueError(f"video {video_id} has no vectors for model {model_id[:12]}; run embed-library first")
        centres = np.array([(s + e) / 2 for _, s, e in windows])
        row = int(np.argmin(np.abs(centres - at_s)))
        return _Query(_vector_of(directory, video_id, row), video_id, int(windows[row][0]))
    model = load_model(resolve_model(str(paths.catalog_path(data_home)), model_id).checkpoint_path)
    view = open_model_view(str(clip), model.config.input_size)
    if view.frames < model.config.clip_frames:
        raise ValueError(f"{clip}: {view.source_frames} frames; a query clip needs at least {model.config.clip_frames} "
                         f"at {view.timebase.model_fps:g} fps")
    _, vectors = embed_frames(model, view.read, view.frames, stride=model.config.clip_frames)
    return _Query(l2_normalize(vectors.mean(axis=0, keepdims=True))[0], None, None)


def search(*, video: str | None = None, at_s: float | None = None, clip: str | Path | None = None,
           vector_id: int | None = None, k: int = 10, scope: str = "all", model: str | None = None,
           data_home: str | Path | None = None) -> list[Hit]:
    """The ``k`` windows most similar to the query, best first (the query window itself excluded)."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
    if scope not in ("all", "across", "within"):
        raise ValueError(f"scope must be all, across or within, got {scope!r}")
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = paths.catalog_path(home)
    model_id = resolve_model(str(catalog_path), model).model_id
    directory = vector_index.index_dir(paths.data_root(home), model_id)
    index, _ = vector_index.load_index(directory, model_id)
    con = catalog.connect(catalog_path, read_only=True)
    try:
        query = _query(con, directory, model_id, video=video, at_s=at_s, clip=clip, vector_id=vector_id, data_home=home)
        if scope == "within" and query.video_id is None:
            raise ValueError("scope 'within' needs a query from an embedded video (video + at_s, or a vector id)")
        found = _nearest(con, index, directory, model_id, query, k, scope)
        return _with_speediness(con, model_id, found)
    finally:
        con.close()


def _nearest(con, index, directory: str, model_id: str, query: _Query, k: int, scope: str) -> list[tuple[int, float]]:
    """(vector_id, similarity) of the best k matches that pass the scope filter, from videos still in their library."""
    if scope == "within":  # one video's windows: exact, straight from its part
        ids = [i for (i,) in con.execute("SELECT vector_id FROM embeddings WHERE model_id = ? AND video_id = ? "
                                         "ORDER BY start_frame", [model_id, query.video_id]).fetchall()]
        _, vectors = vector_index.read_part(vector_index.part_path(directory, query.video_id))
        similarity = vectors @ query.vector
        order = [i for i in np.argsort(-similarity) if ids[i] != query.vector_id][:k]
        return [(ids[i], float(similarity[i])) for i in order]
    excluded = {i for (i,) in con.execute(  # windows of videos whose file is gone: a hit no one can watch
        "SELECT e.vector_id FROM embeddings e JOIN missing_videos m USING (video_id) WHERE e.model_id = ?",
        [model_id]).fetchall()}
    if scope == "across":
        excluded |= {i for (i,) in con.execute("SELECT vector_id FROM embeddings WHERE model_id = ? AND video_id = ?",
                                               [model_id, query.video_id]).fetchall()}
    fetch = k + 1 + len(excluded)
    while True:
        similarity, ids = index.search(query.vector[None].astype(np.float32), min(fetch, index.ntotal))
        hits = [(int(i), float(s)) for i, s in zip(ids[0], similarity[0])
                if i >= 0 and i != query.vector_id and i not in excluded]
        if len(hits) >= k or fetch >= index.ntotal:
            return hits[:k]
        fetch *= 4


def _with_speediness(con, model_id: str, found: list[tuple[int, float]]) -> list[Hit]:
    if not found:
        return []
    con.register("found", pa.table({"vector_id": [i for i, _ in found], "similarity": [s for _, s in found],
                                    "rank": list(range(1, len(found) + 1))}))
    try:
        rows = con.execute("""
            SELECT f.rank, e.vector_id, e.video_id, v.path, e.start_s, e.end_s, f.similarity,
                   (SELECT avg(s.speediness) FROM frame_speediness s
                    WHERE s.video_id = e.video_id AND s.model_id = e.model_id
                      AND s.t_seconds >= e.start_s AND s.t_seconds < e.end_s) AS speediness
            FROM found f JOIN embeddings e ON e.vector_id = f.vector_id AND e.model_id = ?
            JOIN videos v USING (video_id)
            ORDER BY f.rank""", [model_id]).fetchall()
    finally:
        con.unregister("found")
    return [Hit(*row) for row in rows]
