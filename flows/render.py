"""render-speedups: an adaptive speedup render of every scored video that has none yet.

Renders only (video, model, settings) without a `renders` row, so the scheduled run does
just the newly scored footage, and other settings (another rate, say) render beside the
old files. Killed and re-run, it finishes the rest: files appear atomically and each
video's row lands in one transaction. A video that cannot be rendered is recorded as
failed and the run goes on.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from speednet.isolation import warm_up
from speednet.render import RenderConfig
from speednet.speedup import SpeedupConfig
from storage import objects, paths
from tasks.progress import StepProgress
from tasks.render import RenderSettings, render_video, select_unrendered
from tasks.score import resolve_model


@flow(name="render-speedups")
def render_speedups(
    data_home: str | None = None,
    model: str | None = None,
    rate: float = 3.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    s_max: float = 10.0,
    video_ids: list[str] | None = None,
    where: str | None = None,
    output_dir: str | None = None,
    fps: float | None = None,
    side_by_side: bool = False,
    audio: bool = False,
    blend: bool = False,
    plots: bool = False,
    retry_failed: bool = False,
    decode_timeout_s: float = 300.0,
) -> dict:
    """Render every video scored by ``model`` (default: the latest registered) at overall speedup ``rate``.

    ``video_ids`` and ``where`` (SQL over video_speediness columns, e.g. ``frac_slow_motion > 0.2``)
    choose videos; files go to ``output_dir`` (default <data root>/renders; a path or an ``s3://`` URI); ``side_by_side``
    adds an adaptive | uniform comparison, ``audio`` keeps the sound time-stretched, ``plots``
    writes V(t), S*(t) and the uniform rate as a PNG beside each render.
    """
    log = get_run_logger()
    home = Path(data_home) if data_home else paths.data_home()
    catalog_path = str(paths.catalog_path(home))
    settings = RenderSettings(SpeedupConfig(rate=rate, alpha=alpha, beta=beta, s_max=s_max),
                              RenderConfig(fps=fps, blend=blend), side_by_side=side_by_side, audio=audio)
    model_ref = resolve_model(catalog_path, model)
    out_dir = (output_dir if objects.is_remote(output_dir) else str(Path(output_dir).expanduser().resolve())) \
        if output_dir else paths.under_data_root(home, "renders")
    todo = select_unrendered(catalog_path, model_ref.model_id, settings.params_hash(), video_ids, where, retry_failed)
    log.info("model %s, rate %gx: %d videos to render", model_ref.model_id[:12], rate, len(todo))
    if todo:
        warm_up()
    results = []
    with StepProgress(f"rendering {len(todo)} videos at {rate:g}x", len(todo)) as progress:
        for video in todo:
            results.append(render_video(video, model_ref.model_id, settings, catalog_path, out_dir, plots, decode_timeout_s))
            progress.advance()
    rendered = [r for r in results if r["status"] == "rendered"]
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        log.warning("%d videos could not be rendered; see the renders table (status = 'failed')", len(failed))
        create_table_artifact([{k: r[k] for k in ("path", "error")} for r in failed], key="render-failures")
    if rendered:
        create_table_artifact([{"path": r["path"], "output": r["output_path"], "source_s": round(r["source_duration_s"], 2),
                                "output_s": round(r["output_duration_s"], 2), "rate": round(r["achieved_rate"], 3),
                                "rho": r["rho"]} for r in rendered], key="renders")
    create_markdown_artifact(
        f"# Rendered {len(rendered)} videos, {len(failed)} failed\n\n"
        f"- model `{model_ref.model_id}`, overall speedup {rate:g}x (α = {alpha:g} s², β = {beta:g}, "
        f"speeds 1…{s_max:g}x){', side by side with uniform' if side_by_side else ''}{', with audio' if audio else ''}\n"
        f"- {sum(r['source_duration_s'] for r in rendered):.0f} s of video → "
        f"{sum(r['output_duration_s'] for r in rendered):.0f} s, in `{out_dir}`\n"
        f"- table: `renders` in `{catalog_path}`\n",
        key="render-summary")
    return {"model_id": model_ref.model_id, "rendered": len(rendered), "failed": len(failed),
            "output_dir": out_dir, "catalog": catalog_path}
