"""embed-library: window embeddings of every ingested video into a FAISS index per model.

Incremental: only videos without vectors for the model are embedded; the index is
replaced atomically and repaired from the per-video parts if a kill left it behind the
catalog. Bad or vanished files become `embedded_videos` rows with status 'failed'.

Videos are embedded in batches on the flow's task runner (one at a time on threads; across
the workers of a Dask cluster with ``SPEEDNET_DASK_ADDRESS``); workers write only their
videos' part files, and this flow alone writes the catalog and the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.runners import finished_batches, task_runner_from_settings, tasks_run_here
from speednet.isolation import default_workers, warm_up
from storage import paths, vector_index
from tasks.embed import EmbedParams, commit_embeddings, drop_model_vectors, embed_videos, select_unembedded, sync_index
from tasks.progress import StepProgress
from tasks.score import resolve_model, video_batches


@flow(name="embed-library", task_runner=task_runner_from_settings(threads=1))
def embed_library(
    data_home: str | None = None,
    model: str | None = None,
    stride: int = 8,
    dtype: Literal["float32", "float16"] = "float32",
    retry_failed: bool = False,
    rebuild: bool = False,
    commit_every: int = 64,
    decode_timeout_s: float = 300.0,
) -> dict:
    """Embed T-frame windows (every ``stride`` frames) of each new video with ``model`` (default: latest)."""
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = str(paths.catalog_path(home))
    params = EmbedParams(stride=stride, dtype=dtype)
    model_ref = resolve_model(catalog_path, model)
    index_dir = vector_index.index_dir(paths.data_root(home), model_ref.model_id)
    if rebuild:
        drop_model_vectors(catalog_path, model_ref.model_id, index_dir)
    sync_index(catalog_path, model_ref.model_id, index_dir)  # repairs an index a killed run left behind
    todo = select_unembedded(catalog_path, model_ref.model_id, params, retry_failed)
    log.info("model %s: %d videos to embed", model_ref.model_id[:12], len(todo))
    if tasks_run_here():
        warm_up()  # decoder processes start while the catalog is read
    batches = video_batches(todo, default_workers())
    jobs = embed_videos.map(batches, unmapped(model_ref), unmapped(index_dir), unmapped(params), unmapped(decode_timeout_s))
    results, pending, unfinished = [], [], []
    manifest = vector_index.read_manifest(index_dir)
    with StepProgress(f"embedding {len(todo)} videos", len(todo)) as progress:
        for batch, outcomes in finished_batches(jobs, batches, log, "embedded"):
            progress.advance(len(batch))
            if outcomes is None:
                unfinished += batch
                continue
            pending += outcomes
            if len(pending) >= commit_every:  # bounded loss on a kill, few index rewrites
                manifest = commit_embeddings(pending, model_ref.model_id, index_dir, catalog_path, params)
                results += pending
                pending = []
    if pending:
        manifest = commit_embeddings(pending, model_ref.model_id, index_dir, catalog_path, params)
        results += pending
    manifest = manifest or {"count": 0, "dim": None, "index_type": None}
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        log.warning("%d videos could not be embedded", len(failed))
        create_table_artifact([{k: r.get(k) for k in ("path", "error_kind", "error")} for r in failed], key="embed-failures")
    create_markdown_artifact(
        f"# Embedded {len(results) - len(failed)} videos, {len(failed)} failed\n\n"
        f"- model `{model_ref.model_id}`: {manifest['count']} vectors of {manifest['dim']} dims, "
        f"{manifest['index_type']} index in `{index_dir}`\n- window stride {stride} frames; rows in `embeddings`",
        key="embed-summary")
    return {"model_id": model_ref.model_id, "embedded": len(results) - len(failed), "failed": len(failed),
            "unfinished": len(unfinished),
            "vectors": manifest["count"], "index_type": manifest["index_type"], "index_dir": index_dir}
