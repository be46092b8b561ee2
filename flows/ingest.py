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
from speednet.isolation import default_workers, warm_up
from tasks.ingest import Failure, ShardStager, commit_ingest, discover_videos, failure_from, identify_videos, ingest_videos, select_new_videos
from tasks.ingest import batches as make_batches
from tasks.ingest_params import IngestParams
from tasks.progress import StepProgress


@flow(name="ingest-library", task_runner=task_runner_from_settings())
def ingest_library(
    library: str | None = None,
    data_home: str | None = None,
    short_side_px: int = 128,
    clip_frames: int = 48,
    clip_stride_frames: int | None = None,
    frame_encoding: Literal["jpeg", "raw"] = "jpeg",
    target_shard_mb: float = 256.0,
    decode_timeout_s: float = 300.0,
) -> dict:
    """Ingest every video under ``library`` (default: the sample library in the data folder)."""
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    library = library or str(paths.samples_dir(home))
    catalog_path, shards_dir = str(paths.catalog_path(home)), paths.shards_dir(home)
    params = IngestParams(short_side_px, clip_frames, clip_stride_frames, frame_encoding)

    warm_up()  # decoder processes start while files are hashed
    found = discover_videos(library)
    refs, failures = identify_videos(found, catalog_path)
    todo = select_new_videos(refs, catalog_path, params)
    log.info("%d video files under %s; %d new or changed to ingest", len(found), library, len(todo))

    batches = make_batches(todo, default_workers())
    staging = paths.staging_dir(home)
    jobs = ingest_videos.map(batches, unmapped(params), unmapped(str(staging)), unmapped(decode_timeout_s))
    batch_of = {job.task_run_id: batch for job, batch in zip(jobs, batches)}
    rows = []
    with ShardStager(staging, params, target_shard_mb) as stager:
        with StepProgress(f"decoding {len(todo)} videos", len(todo)) as progress:
            for job in as_completed(jobs):
                outcomes = job.result(raise_on_failure=False)
                if isinstance(outcomes, BaseException):  # retries exhausted on an unexpected error
                    outcomes = [failure_from(ref.path, outcomes, ref) for ref in batch_of[job.task_run_id]]
                rows += stager.add([o for o in outcomes if isinstance(o, dict)])  # packed while later batches decode
                failures += [o for o in outcomes if isinstance(o, Failure)]
                progress.advance(len(outcomes))
        summary = commit_ingest(rows, failures, refs, params, catalog_path, shards_dir, stager.finish(), str(stager.folder),
                                library)
    summary.update(library=library, found=len(found), skipped=len(refs) - len(todo), catalog=catalog_path,
        failures=[{"path": f.path, "error_kind": f.error_kind, "error": f.error} for f in failures])
    _publish(summary)
    return summary


def _publish(summary: dict) -> None:
    """The run's outcome as table artifacts (counts, then each failure with its reason)."""
    counts = {k: summary[k] for k in ("found", "skipped", "ingested", "failed", "missing", "clips", "shard_bytes",
                                      "shards_removed", "removed_bytes")}
    create_table_artifact([counts], key="ingest-summary", description=f"Ingest of {summary['library']}")
    if summary["failures"]:
        create_table_artifact(summary["failures"], key="ingest-failures",
                              description="Files that could not be ingested, with the reason and what to do")
