"""Retrieval: embedding throughput, FAISS index choice at 1M vectors, and whether the embedding means anything.

    .venv/bin/python bench/retrieval.py [--sections embed,index,quality] [--n 1000000] [--dim 256]

1. embed: windows/s of the CPU preset (decode + embed, stride 8) on sample files, as a ratio
   to scoring throughput (sliding, 11 speeds) of the same files in the same run.
2. index: at N random-but-clustered unit vectors: build time, size, single-query latency
   p50/p99 at k=10 and recall@10 against exact search, for Flat, IVF (several nprobe) and
   HNSW (on a subset: its build is the slow part on 2 cores).
3. quality: on the synthetic sample library, the share of a window's top-10 neighbours in
   *other* videos that show the same scene type (bounce, pendulum, slide, spring), for the
   trained model (latest registered) and the same network at random init.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from speednet.embedding import embed_frames, l2_normalize  # noqa: E402
from speednet.model import build_speednet  # noqa: E402
from speednet.scoring import ScoreConfig, score_frames  # noqa: E402
from storage import paths, vector_index  # noqa: E402


def trained_model():
    from tasks.score import load_model, resolve_model

    try:
        ref = resolve_model(str(paths.catalog_path()), None)
    except (FileNotFoundError, ValueError) as e:
        print(f"no registered model ({e}); run `bash scripts/demo.sh` first for the quality section")
        return None, None
    return load_model(ref.checkpoint_path), ref.model_id


def random_model():
    torch.manual_seed(0)
    return build_speednet(preset="cpu").eval()


def section_embed(files: list[str]) -> None:
    from speednet.isolation import warm_up
    from tasks.score import open_video

    model, _ = trained_model()
    model = model or random_model()
    warm_up()
    opened = [open_video(f, model.config.input_size) for f in files]
    video_s = sum(n / fps for n, fps, _ in opened)
    t0 = time.perf_counter()
    windows = sum(len(embed_frames(model, read, n, stride=8)[0]) for n, _, read in opened)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n, _, read in opened:
        score_frames(model, read, n, ScoreConfig())
    score_s = time.perf_counter() - t0
    print(f"embed: {len(files)} files, {video_s:.0f} s of video")
    print(f"  embedding  {windows} windows in {embed_s:.1f} s = {windows / embed_s:.1f} windows/s "
          f"= {video_s / embed_s:.2f} video-s/s")
    print(f"  scoring    (sliding, 11 speeds, stride 4) {score_s:.1f} s = {video_s / score_s:.2f} video-s/s")
    print(f"  embedding / scoring throughput: {score_s / embed_s:.2f}x")


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = centres[labels[start:stop]] + 0.6 * rng.standard_normal((stop - start, dim)).astype(np.float32)
    return l2_normalize(out)


def latency(index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - t0)
        found.append(ids[0])
    return np.array(times) * 1000, np.array(found)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def size_mb(index) -> float:
    return len(faiss.serialize_index(index)) / 2**20


def section_index(n: int, dim: int, hnsw_n: int, queries_n: int) -> None:
    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    data = clustered(n + queries_n, dim, clusters=max(100, n // 1000), rng=rng)
    vectors, queries = data[:n], data[n:]
    ids = np.arange(n)
    print(f"index: {n} clustered unit vectors of {dim} dims, {queries_n} single-vector queries, k=10, 2 threads")
    print(f"  {'index':<22}{'build s':>9}{'MiB':>8}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}")
    t0 = time.perf_counter()
    flat = vector_index.build_index(vectors, ids, "flat")
    build = time.perf_counter() - t0
    _, exact = flat.search(queries, 10)  # ground truth, batched
    ms, _ = latency(flat, queries[:100])
    print(f"  {'flat (exact)':<22}{build:>9.1f}{size_mb(flat):>8.0f}{np.median(ms):>9.2f}{np.percentile(ms, 99):>9.2f}{1.0:>11.3f}")
    for small in (10_000, 100_000):
        if small < n:
            sub = vector_index.build_index(vectors[:small], ids[:small], "flat")
            ms_small, _ = latency(sub, queries[:200])
            print(f"  {f'flat at {small}':<22}{'':>9}{size_mb(sub):>8.0f}{np.median(ms_small):>9.2f}"
                  f"{np.percentile(ms_small, 99):>9.2f}{1.0:>11.3f}")
    t0 = time.perf_counter()
    ivf = vector_index.build_index(vectors, ids, "ivf")
    build = time.perf_counter() - t0
    for nprobe in (8, 16, 32, 64):
        ivf.nprobe = nprobe
        ms, found = latency(ivf, queries)
        label = f"ivf{ivf.nlist} nprobe {nprobe}"
        print(f"  {label:<22}{build:>9.1f}{size_mb(ivf):>8.0f}{np.median(ms):>9.2f}{np.percentile(ms, 99):>9.2f}"
              f"{recall(found, exact):>11.3f}")
    if hnsw_n:
        sub_exact = vector_index.build_index(vectors[:hnsw_n], ids[:hnsw_n], "flat")
        _, sub_truth = latency(sub_exact, queries[:200])
        t0 = time.perf_counter()
        hnsw = vector_index.build_index(vectors[:hnsw_n], ids[:hnsw_n], "hnsw")
        build = time.perf_counter() - t0
        for ef in (32, 64, 128):
            faiss.downcast_index(hnsw.index).hnsw.efSearch = ef
            ms, found = latency(hnsw, queries[:200])
            label = f"hnsw32 ef {ef} @{hnsw_n // 1000}k"
            print(f"  {label:<22}{build:>9.1f}{size_mb(hnsw):>8.0f}{np.median(ms):>9.2f}{np.percentile(ms, 99):>9.2f}"
                  f"{recall(found, sub_truth):>11.3f}")
        print(f"  (hnsw build at {hnsw_n} vectors; ~{build * n / hnsw_n / 60:.0f} min extrapolated to {n})")


def section_quality(limit: int, k: int = 10) -> None:
    from speednet.isolation import warm_up
    from tasks.score import open_video

    model, model_id = trained_model()
    if model is None:
        return
    warm_up()
    files = sorted(glob.glob(str(paths.samples_dir() / "synthetic" / "scene-*.mp4")))[:limit]
    kinds = [json.loads(Path(f).with_suffix(".json").read_text())["scene_type"] for f in files]
    opened = [open_video(f, model.config.input_size) for f in files]
    print(f"quality: {len(files)} synthetic scenes, windows every 8 frames, top-{k} neighbours in other videos")
    for name, net in (("trained " + model_id[:12], model), ("random init", random_model())):
        vectors, video, kind = [], [], []
        for i, (n, _, read) in enumerate(opened):
            _, v = embed_frames(net, read, n, stride=8)
            vectors.append(v)
            video += [i] * len(v)
            kind += [kinds[i]] * len(v)
        vectors, video, kind = np.concatenate(vectors), np.array(video), np.array(kind)
        similarity = vectors @ vectors.T
        similarity[video[:, None] == video[None, :]] = -np.inf  # across videos only
        top = np.argsort(-similarity, axis=1)[:, :k]
        share = float(np.mean(kind[top] == kind[:, None]))
        chance = float(np.mean([np.mean(kind[video != video[i]] == kind[i]) for i in range(0, len(kind), 7)]))
        print(f"  {name:<22} same scene type among neighbours: {share:.3f}   (chance {chance:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="embed,index,quality")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256, help="256 = the CPU preset's embedding; 1024 at full size")
    parser.add_argument("--hnsw-n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--quality-videos", type=int, default=80)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if "embed" in sections:
        files = sorted(glob.glob(str(paths.samples_dir() / "real" / "*.mp4")))
        files += sorted(glob.glob(str(paths.samples_dir() / "synthetic" / "scene-*.mp4")))[: max(0, args.files - len(files))]
        if not files:
            sys.exit("no sample library: run `.venv/bin/python -m flows.cli samples var/samples` first")
        section_embed(files)
    if "index" in sections:
        section_index(args.n, args.dim, args.hnsw_n, args.queries)
    if "quality" in sections:
        section_quality(args.quality_videos)


if __name__ == "__main__":
    main()
