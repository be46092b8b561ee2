"""transfer-eval: what a model's features know about a labelled folder, against the same network at random init.

Ingests the folder (one subfolder per class), splits its videos by class and by video,
then reports a linear probe on frozen clip embeddings and a short fine-tune of the whole
network, for the model and for the same architecture at random init; the rows go to the
`transfer_results` table (the paper's pre-training comparison, at this project's scale).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from storage import catalog, paths, transfer_results
from tasks.score import load_model, resolve_model
from tasks.transfer import TransferParams, evaluate_transfer, labelled_videos, load_labelled, run_id, split_by_video


@flow(name="transfer-eval")
def transfer_eval(
    library: str,
    data_home: str | None = None,
    model: str | None = None,
    test_fraction: float = 0.3,
    clips_per_video: int = 4,
    probe_steps: int = 300,
    finetune_steps: int = 60,
    finetune_lr: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Linear probe and fine-tune on ``library`` (``<class>/…`` subfolders) with ``model`` (default: the latest
    registered) and at random init; returns the rows written to `transfer_results`.

    The folder is ingested with ingest's default clip parameters (videos ingested before with
    others are re-ingested); a library ingested otherwise is best evaluated in its own data folder.
    """
    from flows.ingest import ingest_library

    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = str(paths.catalog_path(home))
    params = TransferParams(test_fraction, clips_per_video, probe_steps, finetune_steps, finetune_lr, seed)
    model_ref = resolve_model(catalog_path, model)
    network = load_model(model_ref.checkpoint_path)
    clip_frames, size = network.config.clip_frames, network.config.input_size
    # ingest's defaults, as `speednet ingest` uses: a video ingested before with other clip parameters is re-ingested
    # with these, so a library ingested otherwise is best evaluated in a data folder of its own (SPEEDNET_HOME)
    ingest_library(library=library, data_home=str(home))

    videos = labelled_videos(catalog_path, library)
    classes = sorted({v.label for v in videos})
    train_videos, test_videos = split_by_video(videos, test_fraction, seed)
    train = load_labelled(train_videos, classes, clip_frames, size, clips_per_video)
    test = load_labelled(test_videos, classes, clip_frames, size, clips_per_video)
    log.info("%d classes (%s): %d training videos (%d clips), %d test videos (%d clips)", len(classes),
             ", ".join(classes), len(train_videos), len(train.clips), len(test_videos), len(test.clips))

    results = evaluate_transfer(network, train, test, classes, params)
    evaluation = run_id(library, videos, model_ref.model_id, params)
    rows = [{"run_id": evaluation, "library": str(Path(library).expanduser().resolve()), "model_id": model_ref.model_id,
             **r, "classes": len(classes), "train_videos": len(train_videos), "test_videos": len(test_videos),
             "test_clips": len(test.clips), "params": catalog.canonical_json(dataclasses.asdict(params))}
            for r in results]
    transfer_results.record(catalog_path, rows)
    create_table_artifact([{k: r[k] for k in ("init", "method", "clip_accuracy", "video_accuracy")} for r in rows],
                          key="transfer-results", description=f"{len(classes)} classes of {library}")
    return {"run_id": evaluation, "classes": classes, "rows": rows, "catalog": catalog_path}
