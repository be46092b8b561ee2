"""Learning curves of several CPU-preset training set-ups, run side by side on one GPU.

Exploration aid for the CPU training budget: renders synthetic scenes in memory (no
encode), cuts 3T-frame clips at short side 128 like ingest, trains each set-up in its own
process for a fixed wall time and logs held-out natural-vs-2x accuracy as it goes.
Also measures the full-size (gpu preset) training step: clips/s and peak GPU memory.

    python3 bench/train_sweep_gpu.py --out OUT --seconds 300
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import types  # noqa: E402

for _missing in ("ffmpeg", "imageio_ffmpeg"):  # rendering needs neither; a bare GPU image may lack them
    try:
        __import__(_missing)
    except ImportError:
        sys.modules[_missing] = types.ModuleType(_missing)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CLIP = 48
EVAL_EVERY = int(os.environ.get("EVAL_EVERY", 250))
WORKERS = int(os.environ.get("LOADER_WORKERS", 3))
SHORT = 128

CONFIGS = {
    "A_base": dict(),
    "B_nospatial": dict(spatial_aug=False),
    "C_mild": dict(resize_px=(64, 96)),
    "D_lr5e-4": dict(lr=5e-4),
    "E_48px_nospatial": dict(spatial_aug=False, input_size=48),
    "F_w0.5_nospatial": dict(spatial_aug=False, width=0.5),
    "G_bigdata_nospatial": dict(spatial_aug=False, bigdata=True),
    "H_bigdata_lr5e-4": dict(spatial_aug=False, bigdata=True, lr=5e-4),
    "I_bigdata_spatial": dict(bigdata=True),
    "J_bigdata_64clips": dict(spatial_aug=False, bigdata=True, clips_per_batch=32),
    "K_bigdata_w0.5": dict(spatial_aug=False, bigdata=True, width=0.5),
}


def render(index: int) -> tuple[int, str, np.ndarray]:
    torch.set_num_threads(1)
    from speednet.synthetic.library import render_frames
    from speednet.synthetic.scenes import sample_scene
    scene = sample_scene(np.random.default_rng([0, index]), duration_s=(5.0, 10.0))
    frames = np.concatenate(list(render_frames(scene)))
    h, w = frames.shape[1:3]
    s = SHORT / min(h, w)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False)
    return index, scene.scene_type, x.permute(0, 2, 3, 1).contiguous().numpy()


def clips_of(frames: np.ndarray) -> list[np.ndarray]:
    return [frames[i:i + CLIP] for i in range(0, len(frames) - CLIP + 1, CLIP)]


class RandomBatches(torch.utils.data.IterableDataset):
    def __init__(self, clips, n_clips, make):
        self.clips, self.n_clips, self.make = clips, n_clips, make

    def __iter__(self):
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(1000 + (info.id if info else 0))
        while True:
            pick = rng.choice(len(self.clips), self.n_clips, replace=False)
            yield self.make([self.clips[i] for i in pick], rng=rng)


def run_config(name: str, spec: dict, train: list, val: list, seconds: float, out: Path, val_start: int) -> None:
    from functools import partial

    from speednet.evaluation import speednet_accuracy
    from speednet.model import build_speednet
    from speednet.sampling import AugmentConfig, make_batch
    spec = dict(spec)
    lr = spec.pop("lr", 2e-3)
    bigdata = spec.pop("bigdata", False)
    clips_per_batch = spec.pop("clips_per_batch", 16)
    aug = AugmentConfig(spatial_aug=spec.pop("spatial_aug", True), resize_px=spec.pop("resize_px", None))
    clips = train if bigdata else [c for c in train if c[0] < val_start]
    clips = [c[1] for c in clips]
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_speednet(preset="cpu", **spec).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(RandomBatches(clips, clips_per_batch, partial(make_batch, config=model.config, augment=aug)),
                                         batch_size=None, num_workers=WORKERS, prefetch_factor=4)
    it = iter(loader)
    started = time.perf_counter()
    step, window = 0, []
    log = open(out / f"{name}.jsonl", "w")
    while time.perf_counter() - started < seconds:
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50)
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(((logits > 0).float() == y).float().mean().item())
        step += 1
        if step % EVAL_EVERY == 0:
            acc = speednet_accuracy(model, val)
            rec = {"config": name, "step": step, "seconds": round(time.perf_counter() - started, 1),
                   "train_acc": round(float(np.mean(window)), 4), "val_acc": round(acc, 4), "loss": round(loss.item(), 4)}
            window = []
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
    os._exit(0)


def fullsize(out: Path) -> None:
    from speednet.model import build_speednet
    device = torch.device("cuda")
    model = build_speednet(preset="gpu").to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    results = {"params": sum(p.numel() for p in model.parameters())}
    for batch in (16, 32, 64):
        torch.cuda.reset_peak_memory_stats()
        x = torch.randn(batch, 3, 32, 224, 224, device=device)
        y = (torch.arange(batch, device=device) % 2).float()
        for i in range(13):
            if i == 3:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.binary_cross_entropy_with_logits(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / 10
        results[f"batch{batch}"] = {"step_s": round(dt, 4), "clips_per_s": round(batch / dt, 1),
                                   "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print("fullsize", batch, results[f"batch{batch}"], flush=True)
    results["device"] = torch.cuda.get_device_name()
    results["torch"] = torch.__version__
    (out / "fullsize.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bench = mp.get_context("spawn").Process(target=fullsize, args=(args.out,))
    measure_fullsize = not os.environ.get("SKIP_FULLSIZE") and torch.cuda.is_available()  # CUDA touched in the parent breaks the forked runs
    if measure_fullsize:
        bench.start()
    with mp.get_context("fork").Pool(14) as pool:
        rendered = sorted(pool.map(render, range(args.scenes), chunksize=4))
    print(f"rendered {len(rendered)} scenes in {time.perf_counter() - t0:.1f}s", flush=True)
    if measure_fullsize:
        bench.join()
    base = min(args.scenes, 200)
    val_start = int(0.8 * base)  # like the sample library's 200 scenes split 80/20 by video
    train = [(i, c) for i, _, f in rendered if not val_start <= i < base for c in clips_of(f)]
    val = [c for i, _, f in rendered if val_start <= i < base for c in clips_of(f)]
    print(f"train clips {len(train)} (base {sum(1 for i, _ in train if i < val_start)}), val clips {len(val)}", flush=True)
    procs = [mp.get_context("fork").Process(target=run_config, args=(n, s, train, val, args.seconds, args.out, val_start))
             for n, s in CONFIGS.items() if n in args.configs.split(",")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"done in {time.perf_counter() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
