"""A user's own footage, end to end: a folder of ordinary camera-like clips (no sidecars) through every flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _catalog import rows
from _pan import write_pan_video
from conftest import make_video
from flows.embed import embed_library
from flows.ingest import ingest_library
from flows.render import render_speedups
from flows.score import score_library
from flows.train import train_speednet
from storage import paths
from tasks.search import search
from tasks.train import split_by_video


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """Six clips of ffmpeg's moving test sources and panning textures, 10 to 60 fps, no sidecars."""
    root = tmp_path_factory.mktemp("footage")
    make_video(root / "street.mp4", seconds=4.0, size="192x108", source="testsrc2")
    make_video(root / "zoom.mp4", seconds=4.0, size="160x96", fps=30, source="mandelbrot")
    make_video(root / "cells.mp4", seconds=4.0, size="160x90", source="life")
    make_video(root / "holiday" / "fast.mp4", seconds=3.0, size="160x90", fps=60, source="testsrc")
    write_pan_video(root / "holiday" / "pan_10fps.mp4", speeds=[2.5], frames_each=60, seed=1, fps=10)
    write_pan_video(root / "pan.mp4", speeds=[1.0], frames_each=120, seed=2)
    return root


def test_a_folder_of_real_footage_goes_through_every_flow(footage, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SPEEDNET_HOME", str(home))
    ingested = ingest_library(library=str(footage), short_side_px=64, clip_frames=48)
    assert (ingested["ingested"], ingested["failed"]) == (6, 0)

    split = split_by_video.fn(str(paths.catalog_path(home)), 0.3, 0)
    assert {e.domain for e in split.train} == {e.domain for e in split.held_out} == {"real"}  # real on both sides

    trained = train_speednet(steps=3, batch_size=4, loader_workers=0, val_fraction=0.3, eval_scenes=0, calibration_scenes=0,
                             procedural_share=0.5, warmup_steps=1, checkpoint_every=3)
    ((config, metrics, train_videos, val_videos),) = rows(home, "SELECT config, metrics, train_videos, val_videos FROM models")
    config, metrics = json.loads(config), json.loads(metrics)
    assert (train_videos, val_videos) == (len(split.train), len(split.held_out)) and train_videos >= 3
    assert config["domains"] == ["real", "synthetic"] and config["train"]["procedural_share"] == 0.5
    real = metrics["real"]
    assert real["clips"] > 0 and real["flow_baseline_fit"] == "real"  # the baseline is fitted on real training clips
    assert 0 <= real["flow_baseline_accuracy"] <= 1 and 0 <= real["speednet_auc"] <= 1

    scored = score_library(levels=2, stride=16)
    assert (scored["scored"], scored["failed"]) == (6, 0)
    embedded = embed_library(stride=16)
    assert embedded["embedded"] == 6 and embedded["vectors"] > 0
    (video_id,) = [vid for vid, path in rows(home, "SELECT video_id, path FROM videos") if path.endswith("/pan.mp4")]
    hits = search(video=video_id, at_s=2.0, k=3, scope="across")
    assert len(hits) == 3 and all(h.video_id != video_id for h in hits)
    rendered = render_speedups(rate=2.0)
    assert (rendered["rendered"], rendered["failed"]) == (6, 0)
    names = sorted(Path(p).name for (p,) in rows(home, "SELECT output_path FROM renders"))
    assert names == sorted(f"{stem}-2x-{trained['model_id'][:8]}.mp4"
                           for stem in ("street", "zoom", "cells", "fast", "pan_10fps", "pan"))
    for table in ("videos", "models", "frame_scores", "video_speediness", "segments", "embeddings", "renders"):
        assert rows(home, f"SELECT count(*) FROM {table}")[0][0] > 0, table


def test_a_library_of_only_real_footage_trains_without_procedural_scenes(footage, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SPEEDNET_HOME", str(home))
    ingest_library(library=str(footage), short_side_px=64, clip_frames=48)
    result = train_speednet(steps=2, batch_size=4, loader_workers=0, val_fraction=0.3, eval_scenes=0, calibration_scenes=0,
                            procedural_share=0.0, warmup_steps=1)
    assert json.loads(rows(home, "SELECT metrics FROM models")[0][0])["real"]["clips"] > 0
    assert result["metrics"]["synthetic"]["clips"] == 0


def test_training_on_a_domain_the_library_lacks_says_what_to_do(footage, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SPEEDNET_HOME", str(home))
    ingest_library(library=str(footage / "holiday"), short_side_px=64, clip_frames=48)
    with pytest.raises(ValueError, match=r"nothing to train on in domains \['synthetic'\] \(2 real ingested\)"):
        split_by_video.fn(str(paths.catalog_path(home)), 0.3, 0, ("synthetic",))
