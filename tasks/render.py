"""Render tasks: pick the scored videos without a render, render each, record it in `renders`.

One task run per video (HAZARDS.md). A render reads the video's P_i(t) from `frame_scores`,
solves the speedup curve (``speednet.speedup``), decodes the source through an isolated
worker in bounded chunks and encodes it (``speednet.render``); files appear atomically and
the `renders` row is written in one transaction. Anything that goes wrong becomes a
`status='failed'` row with its reason, and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from speednet.errors import MediaError, VideoNotFound
from speednet.isolation import run_isolated
from speednet.media import content_hash, probe_container
from speednet.render import (RenderConfig, decode_frames_to_file, frame_transfer_dir, mux_stretched_audio, open_source,
                             plan_frames, render, uniform_plan)
from speednet.speedup import SpeedupConfig, SpeedupCurve, optimal_speedup
from storage import catalog, objects
from storage.atomic import partial_path
from storage.scores import StoredScores, stored_scores
from tasks.plots import save_figure

# What a `where` filter of render-speedups can name: every video_speediness column and these of `videos`.
_SCORED_VIDEOS = """
    SELECT s.*, v.path AS source_path, v.codec, v.width, v.height, v.rotation_deg, v.has_audio, v.size_bytes
    FROM video_speediness s JOIN videos v USING (video_id)
    WHERE s.status = 'scored' AND s.model_id = ? AND v.missing_since IS NULL
"""


@dataclass(frozen=True)
class RenderSettings:
    """Everything that decides a render's content; its hash is part of the `renders` key."""

    speedup: SpeedupConfig = SpeedupConfig()
    render: RenderConfig = RenderConfig()
    side_by_side: bool = False  # also write <name>-side-by-side.mp4: adaptive | uniform, same duration
    audio: bool = False  # keep the source's audio, time-stretched to follow S(t)

    def params(self) -> str:
        """Canonical JSON of the settings (the `renders.params` column)."""
        return catalog.canonical_json({**dataclasses.asdict(self.speedup), **dataclasses.asdict(self.render),
                                       "side_by_side": self.side_by_side, "audio": self.audio})

    def params_hash(self) -> str:
        return hashlib.blake2b(self.params().encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class VideoToRender:
    video_id: str
    path: str


@dataclass
class Rendered:
    """One finished render and the curve it followed."""

    output_path: str
    curve: SpeedupCurve
    frames_written: int
    seconds: float
    side_by_side_path: str | None = None
    plot_path: str | None = None
    audio: bool = False  # whether the output carries (stretched) audio


def output_name(source_path: str, video_id: str, model_id: str, settings: RenderSettings, *,
                name_taken: bool = False) -> str:
    """`<source stem>-<rate>x-<model id[:8]>.mp4`, a file a person can find next to its source's name.

    Settings other than the defaults for that rate add `-<settings hash[:6]>`, so two
    renders at one rate never share a file; ``name_taken`` (another video of the same
    stem already rendered under that name) adds `-<video_id[:8]>`.
    """
    name = f"{Path(source_path).stem}-{settings.speedup.rate:g}x-{model_id[:8]}"
    if settings != RenderSettings(SpeedupConfig(rate=settings.speedup.rate)):
        name += f"-{settings.params_hash()[:6]}"
    if name_taken:
        name += f"-{video_id[:8]}"
    return name + ".mp4"


def _output_path(video: VideoToRender, model_id: str, settings: RenderSettings, catalog_path: str, output_dir: str) -> str:
    """Where a video's render goes (a path or URI): its readable name, unless another video's render row holds it."""
    path = objects.join(output_dir, output_name(video.path, video.video_id, model_id, settings))
    con = catalog.connect(catalog_path, read_only=True)
    try:
        taken = con.execute("SELECT count(*) FROM renders WHERE output_path = ? AND video_id <> ?",
                            [path, video.video_id]).fetchone()[0]
    finally:
        con.close()
    return objects.join(output_dir, output_name(video.path, video.video_id, model_id, settings, name_taken=True)) \
        if taken else path


def speedup_video(path: str, scores: StoredScores, settings: RenderSettings, out_path: str | Path, *,
                  plot_path: str | Path | None = None, decode_timeout_s: float = 300.0,
                  on_progress: Callable[[int, int], None] | None = None) -> Rendered:
    """Solve S*(t) from ``scores`` and render ``path`` with it (plus side-by-side, audio and plot as asked)."""
    started = time.perf_counter()
    curve = optimal_speedup(scores.p_natural, scores.speeds, scores.fps, settings.speedup)
    if not Path(path).is_file():
        raise VideoNotFound(path, "no such file")
    info = probe_container(path)
    n_frames, _, frame_size = run_isolated(open_source, path, info, path=path, timeout_s=decode_timeout_s)
    if n_frames != len(curve.speed):
        raise MediaError(path, f"the decoder finds {n_frames} frames but its scores cover {len(curve.speed)}; "
                               "the file changed since scoring: re-score it")

    def read(indices: np.ndarray) -> np.ndarray:
        nbytes = len(indices) * frame_size[0] * frame_size[1] * 3
        with tempfile.NamedTemporaryFile(dir=frame_transfer_dir(nbytes), prefix="speednet-frames-") as transfer:
            shape = run_isolated(decode_frames_to_file, path, info, indices, transfer.name, path=path,
                                 timeout_s=decode_timeout_s)
            return np.fromfile(transfer.name, np.uint8).reshape(shape)

    out_path = Path(out_path)
    fps_out = settings.render.fps or scores.fps
    adaptive = plan_frames(curve.speed, scores.fps, fps_out, settings.render.blend)
    side_path = None
    if settings.side_by_side:
        side_path = out_path.with_name(f"{out_path.stem}-side-by-side{out_path.suffix}")
        baseline = uniform_plan(n_frames, len(adaptive), scores.fps, fps_out, settings.render.blend)
        render(read, [adaptive, baseline], frame_size, side_path, fps_out, settings.render)
    with_audio = settings.audio and info.has_audio
    video_only = partial_path(out_path) if with_audio else out_path  # the picture alone, until the audio is muxed in
    frames = render(read, [adaptive], frame_size, video_only, fps_out, settings.render, on_progress)
    if with_audio:
        try:
            mux_stretched_audio(video_only, path, curve.speed, scores.fps, out_path)
        finally:
            video_only.unlink(missing_ok=True)
    if plot_path:
        plot_path = plot_speedup(curve, plot_path, title=Path(path).name)
    return Rendered(str(out_path), curve, frames, time.perf_counter() - started,
                    str(side_path) if side_path else None, str(plot_path) if plot_path else None, with_audio)


def plot_speedup(curve: SpeedupCurve, path: str | Path, title: str = "") -> str:
    """V(t), S*(t) and the uniform R_o over source time, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(curve.speed)) / curve.fps
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.step(t, curve.speediness, where="post", color="grey", linewidth=1, label=f"speediness V(t), ρ = {curve.rho:g}")
    ax.plot(t, curve.speed, color="C0", linewidth=2, label="adaptive S*(t)")
    ax.axhline(curve.rate, color="C3", linestyle="--", linewidth=1.5, label=f"uniform {curve.rate:g}x")
    ax.set(xlabel="source time (s)", ylabel="speed (x)", ylim=(0, None),
           title=f"{title}: {curve.source_duration_s:.1f} s → {curve.output_duration_s:.1f} s".lstrip(": "))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@task(name="select-unrendered", cache_policy=NO_CACHE)
def select_unrendered(catalog_path: str, model_id: str, params_hash: str, video_ids: list[str] | None = None,
                      where: str | None = None, retry_failed: bool = False) -> list[VideoToRender]:
    """Videos scored by ``model_id`` with no render for these settings (or whose rendered file is gone).

    ``video_ids`` and ``where`` (an SQL condition over video_speediness's columns and videos'
    codec, width, height, rotation_deg, has_audio, size_bytes, run read-only) narrow the set;
    a requested video_id with no scores is an error, as it cannot be rendered.
    """
    con = catalog.connect(catalog_path, read_only=True)
    try:
        scored = dict(con.execute(f"SELECT video_id, source_path FROM ({_SCORED_VIDEOS}) ORDER BY source_path",
                                  [model_id]).fetchall())
        kept = set(scored)
        if where:
            try:
                kept = {r[0] for r in con.execute(f"SELECT video_id FROM ({_SCORED_VIDEOS}) WHERE ({where})", [model_id]).fetchall()}
            except duckdb.Error as e:
                raise ValueError(f"the where filter {where!r} failed: {e}. It may name columns of video_speediness and "
                                 "codec, width, height, rotation_deg, has_audio, size_bytes of videos") from None
        try:
            done = {vid: (status, out) for vid, status, out in con.execute(
                "SELECT video_id, status, output_path FROM renders WHERE model_id = ? AND params_hash = ?",
                [model_id, params_hash]).fetchall()}
        except duckdb.CatalogException:  # a catalog from before renders existed: nothing rendered yet
            done = {}
    finally:
        con.close()
    if video_ids:
        unscored = sorted(set(video_ids) - set(scored))
        if unscored:
            raise ValueError(f"videos {unscored} have no scores by model {model_id[:12]}, or their file is gone from the "
                             "library (the missing_videos view): run score-library first, or check the ids with "
                             "`speednet sql \"SELECT video_id, path FROM videos\"`")
        kept &= set(video_ids)

    def wanted(vid: str) -> bool:
        if vid not in done:
            return True
        status, output = done[vid]
        return retry_failed if status == "failed" else not (output and objects.exists(output))

    return [VideoToRender(vid, path) for vid, path in scored.items() if vid in kept and wanted(vid)]


@task(name="render-video", cache_policy=NO_CACHE)
def render_video(video: VideoToRender, model_id: str, settings: RenderSettings, catalog_path: str, output_dir: str,
                 plots: bool = False, decode_timeout_s: float = 300.0) -> dict:
    """Render one video and record its `renders` row; returns the row (status 'rendered' or 'failed')."""
    out_path = _output_path(video, model_id, settings, catalog_path, output_dir)
    row = {"video_id": video.video_id, "model_id": model_id, "rate": settings.speedup.rate, "params": settings.params(),
           "params_hash": settings.params_hash(), "output_path": str(out_path)}
    try:
        scores = stored_scores(catalog_path, video.video_id, model_id)
        if scores is None:
            raise ValueError(f"video {video.video_id} has no scores by model {model_id[:12]}: run score-library first")
        if not Path(video.path).is_file():
            raise VideoNotFound(video.path, "the file is gone since scoring; re-run ingest-library to update the catalog")
        if content_hash(video.path) != video.video_id:
            raise MediaError(video.path, "the file changed since it was scored; re-run ingest-library and score-library")
        with _local_outputs(out_path) as local_out:
            result = speedup_video(video.path, scores, settings, local_out, decode_timeout_s=decode_timeout_s,
                                   plot_path=local_out.with_suffix(".png") if plots else None)
    except Exception as e:  # bad input (or a bug) becomes a recorded failure; the run goes on
        row.update(status="failed", error=str(e), output_path=None)
        _record(catalog_path, row)
        return {**row, "path": video.path}
    row.update(status="rendered", output_duration_s=result.curve.output_duration_s,
               source_duration_s=result.curve.source_duration_s)
    _record(catalog_path, row)
    return {**row, "path": video.path, "rho": result.curve.rho, "achieved_rate": result.curve.achieved_rate,
            "frames": result.frames_written, "seconds": result.seconds,
            "side_by_side_path": _published(result.side_by_side_path, out_path)}


@contextlib.contextmanager
def _local_outputs(out_path: str) -> Iterator[Path]:
    """A local path to render ``out_path`` into: itself when local; for an object store, a temp folder whose
    files (the render, its side-by-side and plot) are uploaded beside ``out_path`` when the block succeeds."""
    if not objects.is_remote(out_path):
        yield Path(out_path)
        return
    folder = Path(tempfile.mkdtemp(prefix="speednet-render-"))
    try:
        local_out = folder / objects.name(out_path)
        yield local_out
        target_dir = out_path.rsplit("/", 1)[0]
        for produced in sorted(folder.glob("[!.]*")):  # the render last, so its row's file appears last
            if produced != local_out:
                objects.publish(produced, objects.join(target_dir, produced.name))
        objects.publish(local_out, out_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _published(local_file: str | None, out_path: str) -> str | None:
    """Where a file rendered beside the output went: itself locally; beside ``out_path`` on an object store."""
    if local_file is None or not objects.is_remote(out_path):
        return local_file
    return objects.join(out_path.rsplit("/", 1)[0], Path(local_file).name)


def _record(catalog_path: str, row: dict) -> None:
    """Replace the (video, model, settings) row of `renders`, in one transaction."""
    with catalog.writer(catalog_path) as con:
        catalog.upsert(con, "renders", "(video_id, model_id, params_hash)", [{**row, "created_at": catalog.utc_now()}])
