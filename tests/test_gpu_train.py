"""scripts/gpu_train.py: the flow's trainer on a bare machine, sized by a measuring run (run here on CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = {"batch_size": 4, "loader_workers": 0, "temporal_sampler": "decoupled", "spatial_aug": False, "swa_from": 0,
        "eval_scenes": 2, "calibration_scenes": 2, "bn_source": "scenes", "bn_recalibration_batches": 1, "seed": 3}


def test_a_fixed_step_count_trains_and_delivers_the_run_folder(tmp_path):
    """--steps: smoke run, then the run; the folder holds what a resume and the registry need."""
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--out", str(out), "--steps", "4",
                          "--swa-last", "0.5", "--config", json.dumps(TINY)], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "smoke run passed" in run.stdout
    manifest = json.loads((out / "manifest.json").read_text())["config"]
    assert manifest["steps"] == 4 and manifest["swa_from"] == 2 and manifest["procedural_share"] == 1.0
    final = torch.load(out / "final.pt", map_location="cpu", weights_only=False)["extra"]
    assert final["step"] == 4 and "logit_shift" in final["history"][-1] and "held_out" in final["history"][-1]
    assert json.loads((out / "history.json").read_text())[-1]["step"] == 4


def test_the_measuring_run_times_the_training_loop():
    """Steps per second of the real loop: positive, and bounded by what a CPU does at batch 4."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from gpu_train import steps_per_s
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from tasks.trainer import TrainConfig

    rate = steps_per_s(TrainConfig(**TINY, procedural_share=1.0), seconds=3.0)
    assert 0.1 < rate < 1000


def test_a_deadline_too_near_for_ten_steps_is_one_clear_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--out", str(tmp_path / "run"),
                          "--deadline-s", "5", "--probe-s", "1", "--config", json.dumps(TINY)], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("gpu_train: only 0 steps fit before --deadline-s 5")
