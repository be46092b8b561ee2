"""ingest-library: a folder of videos → Parquet clip shards + the DuckDB `videos` catalog.

Re-runnable: only new, changed or retryable files are processed; a killed run resumes
from the parts it staged. A bad file becomes a `status='failed'` row and the run goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact
from prefect.futures import as_completed

from flows.runners import task_runner_from_settings
from storage import paths
from tasks.ingest import (
    commit_ingest, discover_videos, failure_from, identify_videos, ingest_video, probe_video, select_new_videos,
)
from tasks.ingest_params import IngestParams
from tasks.progress import StepProgress


@flow(name="ingest-library", task_runner=task_runner_from_settings())
def ingest_library(
    library: str | None = None,
    data_home: str | None = None,
    short_side_px: int = 128,
    clip_frames: int = 48,
    clip_stride_frames: int | None = None,
    max_fps: float = 30.0,
    frame_encoding: Literal["raw", "jpeg"] = "raw",
    target_shard_mb: float = 256.0,
    decode_timeout_s: float = 300.0,
) -> dict:
    """Ingest every video under ``library`` (default: the sample library in the data folder)."""
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    library = library or str(paths.samples_dir(home))
    catalog_path, shards_dir = str(paths.catalog_path(home)), str(paths.shards_dir(home))
    params = IngestParams(short_side_px, clip_frames, clip_stride_frames, max_fps, frame_encoding)

    found = discover_videos(library)
    refs, failures = identify_videos(found, catalog_path)
    todo = select_new_videos(refs, catalog_path, params)
    log.info("%d video files under %s; %d new or changed to ingest", len(found), library, len(todo))

    probed = []
    for ref, future in zip(todo, probe_video.map(todo)):
        info = future.result(raise_on_failure=False)
        if isinstance(info, BaseException):
            failures.append(failure_from(ref.path, info, ref))
        else:
            probed.append((ref, info))

    jobs = ingest_video.map([r for r, _ in probed], [i for _, i in probed], unmapped(params),
                            unmapped(str(paths.staging_dir(home))), unmapped(decode_timeout_s))
    ref_of = {job.task_run_id: ref for job, (ref, _) in zip(jobs, probed)}
    rows = []
    with StepProgress(f"decoding {len(jobs)} videos", len(jobs)) as progress:
        for job in as_completed(jobs):
            result = job.result(raise_on_failure=False)
            if isinstance(result, BaseException):
                failures.append(failure_from(ref_of[job.task_run_id].path, result, ref_of[job.task_run_id]))
            else:
                rows.append(result)
            progress.advance()

    summary = commit_ingest(rows, failures, refs, params, catalog_path, shards_dir, target_shard_mb)
    summary.update(library=library, found=len(found), skipped=len(refs) - len(todo), catalog=catalog_path,
        failures=[{"path": f.path, "error_kind": f.error_kind, "error": f.error} for f in failures])
    _publish(summary)
    return summary


def _publish(summary: dict) -> None:
    """The run's outcome as table artifacts (counts, then each failure with its reason)."""
    counts = {k: summary[k] for k in ("found", "skipped", "ingested", "failed", "clips", "shard_bytes")}
    create_table_artifact([counts], key="ingest-summary", description=f"Ingest of {summary['library']}")
    if summary["failures"]:
        create_table_artifact(summary["failures"], key="ingest-failures",
                              description="Files that could not be ingested, with the reason and what to do")
