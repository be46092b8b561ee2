"""score-library: per-frame speediness of every ingested video into DuckDB, for analysts' SQL.

Scores only (video, model) pairs not scored yet, so the nightly run does just the new
footage, and a newly registered model scores the whole library beside the old model's
rows. Killed and re-run, it finishes the rest: each video's rows land in one transaction.

Videos are scored in batches on the flow's task runner (one batch at a time on threads;
across the workers of a Dask cluster with ``SPEEDNET_DASK_ADDRESS`` or ``speednet score-library
--dask``). Workers stage each video's rows as a Parquet part; only this flow writes the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.runners import finished_batches, task_runner_from_settings, tasks_run_here
from speednet.isolation import default_workers, warm_up
from speednet.scoring import ScoreConfig
from storage import paths
from tasks.progress import StepProgress
from tasks.score import commit_score, resolve_model, score_videos, select_unscored, video_batches


@flow(name="score-library", task_runner=task_runner_from_settings(threads=1))
def score_library(
    library: str | None = None,
    data_home: str | None = None,
    model: str | None = None,
    levels: int = 10,
    stride: int = 4,
    rho: float = 0.5,
    mode: Literal["sliding", "dense"] = "sliding",
    budget: bool = False,
    ingest_first: bool = False,
    retry_failed: bool = False,
    plots: bool = False,
    maps: int = 0,
    video_ids: list[str] | None = None,
    decode_timeout_s: float = 300.0,
) -> dict:
    """Score every ingested video not yet scored by ``model`` (default: the latest registered).

    ``ingest_first`` ingests new files of ``library`` before scoring (the nightly run does);
    ``plots`` writes a PNG of V(t) and the P_i(t) curves per video under the data root;
    ``maps`` writes that many spatial speediness maps per video (PNG strip and MP4, the windows
    that look most sped up; rows in `speediness_maps`).
    """
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = str(paths.catalog_path(home))
    config = ScoreConfig(levels=levels, stride=stride, rho=rho, mode=mode, budget=budget)
    if ingest_first:
        from flows.ingest import ingest_library

        ingest_library(library=library, data_home=str(home))
    model_ref = resolve_model(catalog_path, model)
    if tasks_run_here():
        warm_up()  # decoder processes start while the catalog is read
    todo = select_unscored(catalog_path, model_ref.model_id, retry_failed, video_ids)
    log.info("model %s: %d videos to score", model_ref.model_id[:12], len(todo))
    plot_dir = paths.under_data_root(home, "plots", "speediness") if plots else None
    batches = video_batches(todo, default_workers())
    jobs = score_videos.map(batches, unmapped(model_ref), unmapped(config), unmapped(paths.staged_scores_dir(home)),
                            unmapped(plot_dir), unmapped(decode_timeout_s), unmapped(maps),
                            unmapped(paths.under_data_root(home, "plots", "maps")))
    results, unfinished = [], []
    with StepProgress(f"scoring {len(todo)} videos", len(todo)) as progress:
        for batch, outcomes in finished_batches(jobs, batches, log, "scored"):
            if outcomes is None:
                unfinished += batch
            else:
                results += [commit_score(outcome, catalog_path) for outcome in outcomes]
            progress.advance(len(batch))
    scored = [r for r in results if r["status"] == "scored"]
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        log.warning("%d videos could not be scored; see the score_failures view", len(failed))
        create_table_artifact([{k: r[k] for k in ("path", "error_kind", "error")} for r in failed], key="score-failures")
    seconds = sum(r["seconds"] for r in scored)
    video_s = sum(r["duration_s"] for r in scored)
    create_markdown_artifact(
        f"# Scored {len(scored)} videos, {len(failed)} failed\n\n"
        f"- model `{model_ref.model_id}`, {config.mode} mode{' with budget' if config.budget else ''}, "
        f"{levels + 1} speeds, stride {stride}, ρ = {rho}\n"
        f"- {video_s:.0f} s of video in {seconds:.0f} s ({video_s / max(seconds, 1e-9):.1f} video-s per s)\n"
        f"- tables: `frame_scores`, `video_speediness`, `segments` in `{catalog_path}`\n"
        + (f"- plots: `{plot_dir}`\n" if plot_dir else "")
        + (f"- {len(unfinished)} videos left for the next run: a worker was lost\n" if unfinished else ""),
        key="score-summary")
    return {"model_id": model_ref.model_id, "scored": len(scored), "failed": len(failed), "unfinished": len(unfinished),
            "catalog": catalog_path, "plots": plot_dir}
