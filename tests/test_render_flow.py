"""The render-speedups flow against the real DuckDB catalog: renders, rows, re-runs, failures, bad parameters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _catalog import register, rows
from _pan import write_pan_video
from flows.ingest import ingest_library
from flows.render import render_speedups
from flows.score import score_library
from speednet.media import VideoDecoder, probe_container

LEVELS = 4  # speeds 1 … 2.44x: reaches slow motion (≥ 1.95x), quick on CPU
HALF = 75  # frames per half of the slowed video






@pytest.fixture(scope="module")
def scored_home(tmp_path_factory, pan_model) -> tuple[Path, Path, str]:
    """A data home with two videos scored by a registered pan model (copy it before changing it)."""
    root = tmp_path_factory.mktemp("render")
    library, home = root / "library", root / "home"
    write_pan_video(library / "slowed.mp4", speeds=[1.0, 0.5], frames_each=HALF, seed=4)  # natural, then half speed
    write_pan_video(library / "natural.mp4", speeds=[1.0], frames_each=100, seed=5)
    assert ingest_library(library=str(library), data_home=str(home), short_side_px=64, clip_frames=16)["ingested"] == 2
    model_id = register(home, pan_model)
    assert score_library(data_home=str(home), levels=LEVELS)["scored"] == 2
    return home, library, model_id




def decode_all(path: str | Path) -> np.ndarray:
    decoder = VideoDecoder(path, probe_container(path))
    return decoder.decode(np.arange(decoder.frame_count))


def test_the_slowed_half_is_sped_up_more_than_the_natural_half(home_copy):
    home, library, _ = home_copy
    assert render_speedups(rate=2.0, alpha=0.25, where="path LIKE '%slowed.mp4'")["rendered"] == 1
    (output,) = [p for (p,) in rows(home, "SELECT output_path FROM renders")]

    out, source = decode_all(output), decode_all(library / "slowed.mp4").astype(np.float32)
    shown = np.array([np.argmin(((source - frame) ** 2).mean(axis=(1, 2, 3))) for frame in out.astype(np.float32)])
    assert np.all(np.diff(shown) >= 0), "output frames follow the source in order"
    natural_rate = HALF / np.count_nonzero(shown < HALF)  # source frames per output frame, per half
    slowed_rate = HALF / np.count_nonzero(shown >= HALF)
    assert 1.0 <= natural_rate < 2.0 < slowed_rate, "against uniform 2x: the slowed half faster, the natural one slower"
    assert slowed_rate > 1.3 * natural_rate, (natural_rate, slowed_rate)


def test_every_scored_video_is_rendered_once_and_a_rerun_renders_nothing(home_copy):
    home, _, model_id = home_copy
    summary = render_speedups(rate=3.0, plots=True, side_by_side=True)
    assert summary == {**summary, "model_id": model_id, "rendered": 2, "failed": 0}

    renders = rows(home, "SELECT v.path, r.output_path, r.output_duration_s, r.source_duration_s, v.fps "
                         "FROM renders r JOIN video_speediness v USING (video_id, model_id) WHERE r.status = 'rendered'")
    assert len(renders) == 2
    for source, output, out_s, source_s, fps in renders:
        # named after the source, the rate and the model; other settings than the rate's defaults add their hash
        assert Path(output).parent == home / "renders"
        assert Path(output).name.startswith(f"{Path(source).stem}-3x-{model_id[:8]}-") and len(Path(output).stem.split("-")) == 4
        assert out_s == pytest.approx(source_s / 3.0, rel=0.01)
        decoder = VideoDecoder(output, probe_container(output))
        assert decoder.frame_count == round(out_s * fps)
        assert Path(output).with_suffix(".png").stat().st_size > 10_000
        assert Path(output).with_name(Path(output).stem + "-side-by-side.mp4").is_file()
    assert not list((home / "renders").glob(".*")), "no temp files left"

    assert render_speedups(rate=3.0, plots=True, side_by_side=True)["rendered"] == 0
    assert rows(home, "SELECT count(*) FROM renders")[0][0] == 2

    assert render_speedups(rate=1.5)["rendered"] == 2, "other settings render beside the first ones"
    assert sorted(Path(p).name for (p,) in rows(home, "SELECT output_path FROM renders WHERE rate = 1.5")) == \
        [f"natural-1.5x-{model_id[:8]}.mp4", f"slowed-1.5x-{model_id[:8]}.mp4"]
    assert rows(home, "SELECT rate, count(*) FROM renders GROUP BY rate ORDER BY rate") == [(1.5, 2), (3.0, 2)]

    Path(renders[0][1]).unlink()
    assert render_speedups(rate=3.0, plots=True, side_by_side=True)["rendered"] == 1, "a deleted render is redone"
    assert rows(home, "SELECT count(*) FROM renders")[0][0] == 4


def test_a_video_that_cannot_be_rendered_is_recorded_and_the_run_goes_on(home_copy, tmp_path):
    home, library, _ = home_copy
    gone = library / "natural.mp4"
    shutil.move(gone, tmp_path / "natural.mp4")
    try:
        summary = render_speedups(rate=2.0)
    finally:
        shutil.move(tmp_path / "natural.mp4", gone)

    assert (summary["rendered"], summary["failed"]) == (1, 1)
    ((status, error, output),) = rows(home, "SELECT r.status, r.error, r.output_path FROM renders r JOIN videos v "
                                            "USING (video_id) WHERE v.path LIKE '%natural.mp4'")
    assert status == "failed" and "natural.mp4" in error and "gone since scoring" in error and output is None
    assert render_speedups(rate=2.0)["rendered"] == 0, "failures are not retried by default..."
    assert render_speedups(rate=2.0, retry_failed=True)["rendered"] == 1, "...but on request"
    assert rows(home, "SELECT status, count(*) FROM renders GROUP BY 1") == [("rendered", 2)]


def test_a_video_gone_from_its_library_is_not_attempted(home_copy, tmp_path):
    home, library, _ = home_copy
    gone = library / "natural.mp4"
    shutil.move(gone, tmp_path / "natural.mp4")
    try:
        assert ingest_library(library=str(library), short_side_px=64, clip_frames=16)["missing"] == 1
        summary = render_speedups(rate=2.0)
    finally:
        shutil.move(tmp_path / "natural.mp4", gone)
    assert (summary["rendered"], summary["failed"]) == (1, 0)
    assert rows(home, "SELECT v.path FROM renders JOIN videos v USING (video_id)")[0][0].endswith("slowed.mp4")


def test_bad_parameters_fail_with_a_clear_message_before_any_render(home_copy):
    home, _, _ = home_copy
    with pytest.raises(ValueError, match="rate .* must be >= 1"):
        render_speedups(rate=0.5)
    with pytest.raises(ValueError, match="no scores by model .* run score-library first"):
        render_speedups(video_ids=["0123456789abcdef0123456789abcdef"])
    with pytest.raises(ValueError, match="where filter .* failed"):
        render_speedups(where="no_such_column > 1")
    assert rows(home, "SELECT count(*) FROM renders")[0][0] == 0


def test_the_cli_uses_the_stored_scores_of_a_catalogued_file(home_copy, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    _, library, _ = home_copy
    out = tmp_path / "fast.mp4"
    run = CliRunner().invoke(app, ["speedup", str(library / "slowed.mp4"), "--rate", "2.5", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert "scoring it now" not in run.output and "2.500x" in run.output
    assert VideoDecoder(out, probe_container(out)).frame_count == round(2 * HALF / 2.5)
