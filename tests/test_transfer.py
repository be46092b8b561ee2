"""transfer-eval on a tiny labelled folder: split by video, probe and fine-tune against random init, rows in the table."""

from __future__ import annotations

import numpy as np
import pytest

from _catalog import register, rows
from _pan import write_pan_video
from conftest import make_video
from speednet.transfer import Labelled, accuracies
from storage import transfer_results


@pytest.fixture
def labelled(tmp_path):
    """Two classes, three videos each: a panning texture, and ffmpeg's test patterns."""
    root = tmp_path / "labelled"
    for i in range(3):
        write_pan_video(root / "pan" / f"pan{i}.mp4", speeds=[1.0], frames_each=60, seed=20 + i)
        make_video(root / "pattern" / f"pattern{i}.mp4", seconds=2.5, size="96x64",
                   source=("testsrc", "mandelbrot", "rgbtestsrc")[i])
    make_video(root / "unlabelled.mp4", seconds=2.5)  # directly in the folder: no class, left out
    return root


def test_video_accuracy_is_a_vote_of_each_videos_clips():
    data = Labelled(np.zeros((4, 1)), labels=np.array([0, 0, 1, 1]), videos=np.array([0, 0, 1, 1]))
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # video 0: one clip wrong, but the mean right
    assert accuracies(logits, data) == (0.75, 1.0)


def test_transfer_eval_writes_probe_and_fine_tune_rows_for_the_model_and_random_init(labelled, home, pan_model):
    from flows.transfer import transfer_eval

    model_id = register(home, pan_model)
    result = transfer_eval(library=str(labelled), finetune_steps=8, clips_per_video=2)
    assert result["classes"] == ["pan", "pattern"]
    stored = rows(home, "SELECT init, method, classes, train_videos, test_videos, clip_accuracy, video_accuracy, model_id "
                        "FROM transfer_results ORDER BY init, method")
    assert [(r[0], r[1]) for r in stored] == [("pretrained", "fine_tune"), ("pretrained", "linear_probe"),
                                              ("random", "fine_tune"), ("random", "linear_probe")]
    assert all(r[2:5] == (2, 4, 2) and 0.0 <= r[5] <= 1.0 and 0.0 <= r[6] <= 1.0 and r[7] == model_id for r in stored)
    probe = dict(((r[0], r[1]), r[6]) for r in stored)
    assert probe[("pretrained", "linear_probe")] == 1.0, "a smooth pan and a test pattern are easy to tell apart"
    assert rows(home, "SELECT count(*) FROM ingested_videos")[0][0] == 7  # the unlabelled file is ingested, not used

    # the same evaluation again replaces its rows
    transfer_results.record(home / "catalog.duckdb", [{**row, "clip_accuracy": 0.0} for row in result["rows"]])
    assert rows(home, "SELECT count(*), max(clip_accuracy) FROM transfer_results") == [(4, 0.0)]


def test_a_folder_with_one_class_is_refused_with_what_to_do(tmp_path, home, pan_model):
    from flows.transfer import transfer_eval

    register(home, pan_model)
    for i in range(2):
        make_video(tmp_path / "one" / "only" / f"v{i}.mp4", seconds=2.5)
    with pytest.raises(ValueError, match="at least two subfolders"):
        transfer_eval(library=str(tmp_path / "one"), finetune_steps=2)
