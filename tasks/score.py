"""Scoring tasks: pick the (video, model) pairs not yet scored, score each video, write its rows.

One task run per video (HAZARDS.md: never per window), which decodes the file once in
bounded chunks through an isolated worker, runs the model here, and replaces the video's
rows in one transaction. A file that cannot be scored becomes a `status='failed'` row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from speednet import scoring
from speednet.errors import MediaError, TooShort, VideoNotFound
from speednet.isolation import run_isolated
from speednet.media import content_hash, probe_container
from speednet.model import SpeedNet, load_checkpoint
from speednet.timebase import TimeBase
from storage import catalog, objects, scores
from tasks.progress import StepProgress
from tasks.score_job import decode_range, frame_count


@dataclass(frozen=True)
class ModelRef:
    """A registered model: its id (checkpoint hash) and checkpoint file."""

    model_id: str
    checkpoint_path: str


@dataclass(frozen=True)
class VideoToScore:
    video_id: str
    path: str
    frame_count: int


# Videos longer than this (~10 min at 30 fps) get their own progress bar while scoring.
LONG_VIDEO_FRAMES = 18_000


@dataclass
class VideoScores:
    """One file's scores and what is needed to store or print them."""

    path: str
    fps: float
    frames: int
    scores: scoring.Scores
    seconds: float


def resolve_model(catalog_path: str, model: str | None = None) -> ModelRef:
    """The model to score with: a model_id (or unique prefix), a checkpoint path, or None for the latest registered."""
    if model and Path(model).is_file():
        return ModelRef(content_hash(model), str(model))
    if model and objects.is_remote(model):
        return ModelRef(content_hash(objects.local_copy(model)), model)
    if not Path(catalog_path).exists():
        raise FileNotFoundError(f"no catalog at {catalog_path}: ingest and train first, or pass a checkpoint file")
    con = catalog.connect(catalog_path, read_only=True)
    try:
        if model:
            rows = con.execute("SELECT model_id, checkpoint_path FROM models WHERE model_id LIKE ? || '%'", [model]).fetchall()
            if len(rows) != 1:
                known = [r[0] for r in con.execute("SELECT model_id FROM models ORDER BY created_at DESC").fetchall()]
                raise ValueError(f"model {model!r} matches {len(rows)} registered models; known: {known or 'none'}")
        else:
            rows = con.execute("SELECT model_id, checkpoint_path FROM latest_model").fetchall()
            if not rows:
                raise ValueError("no registered model: run the train-speednet flow first (`speednet demo` does), "
                                 "or pass a checkpoint file")
    finally:
        con.close()
    return ModelRef(*rows[0])


@functools.lru_cache(maxsize=2)
def load_model(checkpoint_path: str) -> SpeedNet:
    """The model of a checkpoint (a path, or a URI fetched once into the local cache), on the GPU when there is one,
    kept loaded for the next video."""
    model, _, _ = load_checkpoint(objects.local_copy(checkpoint_path), "cuda" if torch.cuda.is_available() else "cpu")
    return model


def open_video(path: str, short_side_px: int, decode_timeout_s: float = 300.0
               ) -> tuple[int, float, Callable[[int, int], np.ndarray]]:
    """(frame count, fps, read(start, stop)) of a file decoded at ``short_side_px`` in an isolated worker."""
    if not Path(path).is_file():
        raise VideoNotFound(path, "no such file")
    info = probe_container(path)
    n_frames, fps = run_isolated(frame_count, path, info, short_side_px, path=path, timeout_s=decode_timeout_s,
                                 lane="stream")

    def read(start: int, stop: int) -> np.ndarray:
        return run_isolated(decode_range, path, info, short_side_px, start, stop, path=path, timeout_s=decode_timeout_s,
                            lane="stream")

    return n_frames, fps, read


@dataclass(frozen=True)
class ModelView:
    """A file as the model sees it: ``frames`` model frames at ``timebase.model_fps``, read by ``read(start, stop)``."""

    source_frames: int
    timebase: TimeBase
    frames: int
    read: Callable[[int, int], np.ndarray]


def open_model_view(path: str, short_side_px: int, decode_timeout_s: float = 300.0) -> ModelView:
    """``open_video`` through the source's time base, so one model frame step is 1/20–1/30 s of real time."""
    n_frames, fps, read = open_video(path, short_side_px, decode_timeout_s)
    timebase = TimeBase.for_fps(fps)
    return ModelView(n_frames, timebase, timebase.model_frames(n_frames), timebase.reader(read))


def score_file(path: str, model: SpeedNet, config: scoring.ScoreConfig, *, decode_timeout_s: float = 300.0,
               on_progress: Callable[[int, int], None] | None = None) -> VideoScores:
    """Decode ``path`` once at the model's input size (short side) and score every frame at every speed.

    Speeds are × real time: the model judges the file through its time base (a 60 fps
    source thinned, a 10 fps one interpolated), and P(natural) comes back per source frame.
    """
    started = time.perf_counter()
    view = open_model_view(path, model.config.input_size, decode_timeout_s)
    if view.frames < model.config.clip_frames:
        raise TooShort(path, f"{view.source_frames} frames; scoring needs at least one {model.config.clip_frames}-frame "
                             f"window at {view.timebase.model_fps:g} fps")
    result = scoring.score_frames(model, view.read, view.frames, config, on_progress=on_progress)
    timebase = view.timebase
    if not timebase.is_source_rate:
        result = dataclasses.replace(
            result, p_natural=timebase.to_source(result.p_natural, view.source_frames),
            window_p=[(timebase.source_position(at), p) for at, p in result.window_p])
    return VideoScores(path, timebase.source_fps, view.source_frames, result, time.perf_counter() - started)


def per_second_table(video: VideoScores, rho: float, all_speeds: bool = True) -> list[dict]:
    """One row per second of video: V(t), its segment kind, and P(natural) averaged over the second's frames.

    P at every speed with ``all_speeds``; else at 1x and at the speed nearest 2x only, which
    fits an 80-column terminal.
    """
    from speednet.scoring import SEGMENT_KINDS, frame_kinds

    v = video.scores.speediness(rho)
    kinds = frame_kinds(v, video.fps)
    speeds = video.scores.speeds
    shown = range(len(speeds)) if all_speeds else sorted({0, int(np.argmin(np.abs(speeds - 2.0)))})
    rows = []
    for second in range(int(np.ceil(video.frames / video.fps))):
        lo, hi = int(second * video.fps), min(video.frames, int((second + 1) * video.fps))
        if hi <= lo:
            continue
        row = {"second": second, "speediness": float(np.median(v[lo:hi])),
               "segment": SEGMENT_KINDS[int(np.bincount(kinds[lo:hi], minlength=3).argmax())]}
        row.update({f"p@{speeds[i]:.2f}x": float(video.scores.p_natural[i, lo:hi].mean()) for i in shown})
        rows.append(row)
    return rows


def check_unchanged(path: str, video_id: str) -> None:
    """Raise if the catalogued file is gone or its content is no longer ``video_id`` (identity by content)."""
    if not Path(path).is_file():
        raise VideoNotFound(path, "the file is gone since ingest; re-run ingest-library to update the catalog")
    if content_hash(path) != video_id:
        raise MediaError(path, "the file changed since it was ingested; re-run ingest-library first")


@task(name="select-unscored", cache_policy=NO_CACHE)
def select_unscored(catalog_path: str, model_id: str, retry_failed: bool = False,
                    video_ids: list[str] | None = None) -> list[VideoToScore]:
    """Ingested videos with no score rows for ``model_id`` yet (failed ones too when ``retry_failed``)."""
    done = scores.scored_pairs(catalog_path, model_id)
    con = catalog.connect(catalog_path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, path, frame_count FROM ingested_videos ORDER BY path").fetchall()
    finally:
        con.close()
    wanted = set(video_ids) if video_ids else None
    return [VideoToScore(vid, path, frames) for vid, path, frames in rows
            if (wanted is None or vid in wanted) and (vid not in done or (retry_failed and done[vid] == "failed"))]


def plot_name(path: str, video_id: str, model_id: str) -> str:
    """A V(t) plot's file name: the source's stem first, so people find it; ids keep same-named files apart."""
    return f"{Path(path).stem}-{video_id[:8]}-{model_id[:8]}.png"


def video_batches(videos: list, workers: int) -> list[list]:
    """Scoring and embedding tasks: ingest's batching (``tasks.ingest.batches``), longest video first, ≤ 8 per task."""
    from tasks.ingest import batches

    return batches(videos, workers, max_per_batch=8, size=lambda video: video.frame_count)


def score_one(video: VideoToScore, model_ref: ModelRef, config: scoring.ScoreConfig, staging: str,
              plot_dir: str | None = None, decode_timeout_s: float = 300.0, maps: int = 0,
              map_dir: str | None = None) -> dict:
    """Score one video into a staged part (no catalog access); its outcome row, 'scored' (with ``part``) or 'failed'.

    With ``maps``, that many spatial speediness maps of the windows that look most sped up
    at 1x are written to ``map_dir`` and their rows travel in the part. A part staged by an
    earlier, killed run with the same model and parameters is reused.
    """
    params = catalog.canonical_json(dataclasses.asdict(config))
    part = scores.part_path(staging, video.video_id, model_ref.model_id, params)
    head = {"video_id": video.video_id, "model_id": model_ref.model_id, "path": video.path, "score_params": params}
    staged = _staged_summary(part)
    if staged and (plot_dir is None or (staged.get("plot_path") and objects.exists(staged["plot_path"]))) \
            and staged.get("maps_asked", 0) == maps:
        return {**staged, "status": "scored", "part": part, "seconds": 0.0}
    try:
        check_unchanged(video.path, video.video_id)
        model = load_model(model_ref.checkpoint_path)
        long_video = video.frame_count > LONG_VIDEO_FRAMES
        with StepProgress(f"scoring {Path(video.path).name}", 0) if long_video else contextlib.nullcontext() as progress:
            result = score_file(video.path, model, config, decode_timeout_s=decode_timeout_s,
                                on_progress=progress.update if progress else None)
    except Exception as e:  # bad input (or a bug) becomes a recorded failure; the run goes on
        return {**head, "status": "failed", "error_kind": getattr(e, "kind", "score_failed"), "error": str(e)}

    map_rows = _maps_of(video, model_ref, model, result, maps, map_dir, decode_timeout_s) if maps else []
    v = result.scores.speediness(config.rho)
    plot_path = None
    if plot_dir:
        from tasks.plots import plot_speediness
        plot_path = plot_speediness(result, config.rho, objects.join(plot_dir, plot_name(video.path, video.video_id, model_ref.model_id)))
    summary = {**head, "rho": config.rho, "fps": result.fps, **scoring.summary(v, result.fps),
               "windows_run": result.scores.windows_run, "windows_skipped": result.scores.windows_skipped,
               "seconds": result.seconds, "plot_path": str(plot_path) if plot_path else None,
               **({"maps": map_rows, "maps_asked": maps} if maps else {})}
    frame_rows = scores.frame_score_table(video.video_id, model_ref.model_id, result.scores.speeds,
                                          result.scores.p_natural, result.fps)
    segment_rows = list(scoring.segments(v, result.scores.p_natural[0], result.fps))
    scores.write_part(part, summary, frame_rows, segment_rows)
    return {**summary, "status": "scored", "part": part}


def _maps_of(video: VideoToScore, model_ref: ModelRef, model: SpeedNet, result: VideoScores, count: int,
             map_dir: str | None, decode_timeout_s: float) -> list[dict]:
    """Maps of the ``count`` windows of a scored video that look most sped up at 1x; their rows.

    A map that cannot be made (a decode error on the second pass, say) is logged and left
    out: the video's scores stand without it.
    """
    from tasks.explain import DEFAULT_MAP_INPUT, DISPLAY_PX, explain, most_sped_up_starts

    try:
        view = open_model_view(video.path, DISPLAY_PX, decode_timeout_s)
    except Exception as e:  # noqa: BLE001 -- the scores are already made
        _log_map_failure(video.path, e)
        return []
    fps = view.timebase.model_fps
    latest_start_s = (view.frames - model.config.clip_frames) / fps  # the last whole window in the model's time base
    rows = []
    for at_s in most_sped_up_starts(result.scores.p_natural[0], result.fps, model.config.clip_frames / fps, count):
        try:
            rows.append(explain(video.path, video.video_id, model_ref.model_id, model, view,
                                max(0.0, min(at_s, latest_start_s)), 1.0, DEFAULT_MAP_INPUT, map_dir))
        except Exception as e:  # noqa: BLE001
            _log_map_failure(video.path, e)
    return rows


def _log_map_failure(path: str, error: Exception) -> None:
    import logging

    logging.getLogger("speednet.maps").warning("no speediness map of %s: %s", path, error)


def _staged_summary(part: str) -> dict | None:
    """The summary of a part staged earlier, or None (none, or another run just committed and deleted it)."""
    try:
        return scores.read_part_summary(part)
    except FileNotFoundError:
        return None


@task(name="score-videos", cache_policy=NO_CACHE)
def score_videos(batch: list[VideoToScore], model_ref: ModelRef, config: scoring.ScoreConfig, staging: str,
                 plot_dir: str | None = None, decode_timeout_s: float = 300.0, maps: int = 0,
                 map_dir: str | None = None) -> list[dict]:
    """Score a batch of videos on this worker (the model loads once per worker process) into staged parts."""
    return [score_one(video, model_ref, config, staging, plot_dir, decode_timeout_s, maps, map_dir) for video in batch]


def commit_score(outcome: dict, catalog_path: str) -> dict:
    """Write one video's outcome to the catalog in one transaction: its staged part, or its failure row."""
    if outcome["status"] == "failed":
        scores.write_failed(catalog_path, outcome["video_id"], outcome["model_id"], outcome["path"],
                            outcome["error_kind"], outcome["error"], outcome["score_params"])
    else:
        scores.commit_part(catalog_path, outcome["part"])
    return outcome
