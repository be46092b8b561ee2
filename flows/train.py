"""train-speednet: split the catalog by video → train → evaluate against the flow baseline → register."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from storage import paths, shards
from tasks.train import (DOMAINS, evaluate_model, plot_curves, register_model, resolve_init, split_by_video,
                         train_model)
from tasks.trainer import TrainConfig, run_identity


@flow(name="train-speednet")
def train_speednet(
    data_home: str | None = None,
    preset: str = "cpu",
    width: float | None = None,
    input_size: int | None = None,
    steps: int = 1200,
    batch_size: int = 32,
    lr: float = 2e-3,
    warmup_steps: int = 50,
    seed: int = 0,
    resume: bool = True,
    val_fraction: float = 0.15,
    domains: list[str] = list(DOMAINS),
    procedural_share: float = 0.5,
    init_from: str | None = None,
    temporal_sampler: str = "decoupled",
    curriculum_steps: int = 0,
    ema_decay: float = 0.998,
    swa_from: int | None = None,
    pair_centring: float | None = None,
    bn_recalibration_batches: int = 30,
    bn_source: str = "training",
    calibration_scenes: int = 400,  # fewer give a noisy cut: the demo's weights got +0.77 from 100, -1.03 from 400
    eval_every: int = 0,
    eval_scenes: int = 100,
    same_batch: bool = True,
    temporal_aug: bool = True,
    spatial_aug: bool = False,
    loader_workers: int = 1,
    nproc: int = 1,
    checkpoint_every: int = 100,
) -> dict:
    """Train SpeedNet on the ingested library mixed with fresh procedural scenes; resumes a killed run.

    ``procedural_share`` of the batches are fresh physics scenes (1.0: no library needed);
    ``width`` overrides the preset's channel multiplier (more capacity, slower steps);
    ``input_size`` the short side the model sees (default: ``init_from``'s, else the preset's);
    ``swa_from`` delivers the equal-weight mean of the weights from that step on (SWA) instead
    of the EMA; ``pair_centring`` weighs a penalty on the midpoint of each scene's two logits
    (``speednet.model.pair_centring_penalty``); ``bn_source="scenes"`` re-estimates the final BatchNorm statistics on the fresh
    calibration scenes at exact speeds (as scored) rather than on training batches;
    ``init_from`` fine-tunes from ``reference`` (the shipped model), a checkpoint file or a
    registered model_id; ``domains`` says which ingested videos train ("real", "synthetic");
    ``temporal_sampler="decoupled"`` draws each fresh scene's versions at a physics speed from
    their label's range through an independent frame stutter (library clips, whole frames
    only, are sampled "mixed"), so V(t) at the scorer's in-between speeds reads motion.
    """
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = str(paths.catalog_path(home))
    config = TrainConfig(preset=preset, width=width, input_size=input_size, steps=steps, batch_size=batch_size, lr=lr,
                         warmup_steps=warmup_steps, seed=seed,
                         same_batch=same_batch, temporal_aug=temporal_aug, spatial_aug=spatial_aug,
                         loader_workers=loader_workers, checkpoint_every=checkpoint_every,
                         temporal_sampler=temporal_sampler, procedural_share=procedural_share,
                         curriculum_steps=curriculum_steps, ema_decay=ema_decay, swa_from=swa_from, eval_every=eval_every,
                         pair_centring=pair_centring,
                         eval_scenes=eval_scenes, bn_recalibration_batches=bn_recalibration_batches, bn_source=bn_source,
                         calibration_scenes=calibration_scenes,
                         init_from=resolve_init(init_from, catalog_path))
    split = split_by_video(catalog_path, val_fraction, seed, tuple(domains), allow_empty=procedural_share == 1.0)
    run_id = hashlib.blake2b(json.dumps([run_identity(config), split.snapshot]).encode(), digest_size=6).hexdigest()
    run_dir = home / "runs" / f"run-{run_id}"
    log.info("%d training videos (%s), %d held out, %.0f%% of batches fresh procedural scenes; run folder %s",
             len(split.train), ", ".join(domains), len(split.held_out), 100 * procedural_share, run_dir)

    with shards.reading(entry.shard_path for entry in split.train + split.held_out):  # no ingest deletes them meanwhile
        result = train_model(config, split, str(run_dir), resume, nproc)
        metrics = evaluate_model(result["checkpoint"], split, history=result["history"])
    plot = plot_curves(result["history"], metrics, str(run_dir / "curves.png"))
    model_id = register_model(result["checkpoint"], config, split, metrics, catalog_path, paths.models_dir(home),
                              domains=list(domains))

    create_table_artifact([{"domain": d, **m} for d, m in metrics.items()], key="train-metrics",
                          description=f"Held-out natural-vs-2x accuracy of model {model_id}")
    create_markdown_artifact(f"Model `{model_id}`: loss and accuracy curves in `{plot}`", key="train-curves")
    return {"model_id": model_id, "metrics": metrics, "run_dir": str(run_dir), "plot": plot}
