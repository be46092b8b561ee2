"""score-library fanned out on a local Dask cluster: 1 worker against 2 on the same files, and the commit's cost.

Each run scores the same ingested files with the same model in a fresh copy of one data
folder: on the flow's own threads (one batch at a time, torch on every core), then on a
local Dask cluster of one and of two one-thread worker processes (Dask gives each worker
one torch thread). The ratio of the two Dask runs is what a second worker adds. The
commit's cost is measured apart: staged parts of a typical video's size committed into a
copy of the catalog, one transaction per video, scaled to 1,000 videos.

    OMP_WAIT_POLICY=passive .venv/bin/python bench/fanout.py [--videos 12] [--seconds 8] [--out var/bench/fanout]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speednet.ffmpeg import ffmpeg_exe  # noqa: E402
from storage import paths  # noqa: E402

SOURCES = ("testsrc2", "mandelbrot", "life", "testsrc", "rgbtestsrc", "smptebars")


def write_library(folder: Path, videos: int, seconds: float) -> None:
    """``videos`` moving test patterns of ``seconds`` each at 320x180, 30 fps (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        path = folder / f"clip{i:03d}.mp4"
        if not path.exists():
            source = SOURCES[i % len(SOURCES)]
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                            f"{source}=size=320x180:rate=30", "-t", str(seconds + 0.1 * i), "-c:v", "libx264",
                            "-pix_fmt", "yuv420p", str(path)], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_score(home: Path, model: str, levels: int, workers: int | None) -> tuple[float, dict]:
    """Wall time of one score-library run in ``home``: on threads (``workers`` None) or a local Dask cluster."""
    import dask
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.score import score_library

    flow = score_library
    started = time.perf_counter()
    if workers is None:
        summary = flow(data_home=str(home), model=model, levels=levels)
        return time.perf_counter() - started, summary
    with dask.config.set({"distributed.worker.daemon": False}):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            started = time.perf_counter()  # the cluster's start-up is not scoring
            summary = flow.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))(
                data_home=str(home), model=model, levels=levels)
            return time.perf_counter() - started, summary


def commit_cost(home: Path, parts: int) -> float:
    """Seconds per video to commit staged parts of one scored video's size (one transaction each)."""
    import duckdb
    import numpy as np
    import pyarrow.parquet as pq

    from storage import scores

    catalog_path = paths.catalog_path(home)
    con = duckdb.connect(str(catalog_path), read_only=True)
    try:
        video_id, model_id = con.execute("SELECT video_id, model_id FROM video_speediness WHERE status = 'scored' "
                                         "LIMIT 1").fetchone()
        frames = con.execute("SELECT speed, p_natural FROM frame_scores WHERE video_id = ? AND model_id = ? "
                             "ORDER BY speed, frame", [video_id, model_id]).fetchnumpy()
        row = con.execute("SELECT * FROM video_speediness WHERE video_id = ? AND model_id = ?", [video_id, model_id])
        names = [d[0] for d in row.description]
        summary = dict(zip(names, row.fetchone()))
        segments = con.execute("SELECT start_s, end_s, kind, mean_speediness, mean_p_natural FROM segments "
                               "WHERE video_id = ? AND model_id = ?", [video_id, model_id]).fetchall()
    finally:
        con.close()
    for key in ("status", "scored_at", "error_kind", "error"):
        summary.pop(key, None)
    segment_rows = [dict(zip(("start_s", "end_s", "kind", "mean_speediness", "mean_p_natural"), s)) for s in segments]
    staging = home / "staging" / "bench-commit"
    speeds = np.unique(frames["speed"])
    p_natural = np.asarray(frames["p_natural"]).reshape(len(speeds), -1)
    staged = []
    for i in range(parts):
        fake_id = f"{i:08x}" + video_id[8:]
        table = scores.frame_score_table(fake_id, model_id, speeds, p_natural, summary["fps"])
        staged.append(scores.write_part(staging / f"{fake_id}.parquet", {**summary, "video_id": fake_id}, table,
                                        segment_rows))
    assert pq.read_metadata(staged[0]).num_rows == p_natural.size
    started = time.perf_counter()
    for part in staged:
        scores.commit_part(catalog_path, part)
    return (time.perf_counter() - started) / parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each clip (each is 0.1 s longer than the last).")
    parser.add_argument("--levels", type=int, default=10, help="Speeds 1.25^0 … 1.25^levels, as score-library's default.")
    parser.add_argument("--model", default=str(paths.REFERENCE_CHECKPOINT), help="Checkpoint to score with.")
    parser.add_argument("--commit-parts", type=int, default=200, help="Staged parts to commit for the commit's cost.")
    parser.add_argument("--out", type=Path, default=Path("var/bench/fanout"))
    args = parser.parse_args()

    from flows.ingest import ingest_library
    from flows.stack import Stack

    out = args.out.resolve()
    library, base = out / "library", out / "ingested"
    write_library(library, args.videos, args.seconds)
    shutil.rmtree(base, ignore_errors=True)
    stack = Stack(home=out / "stack", port=free_port())  # Dask workers report to a real API server
    stack.start()
    try:
        os.environ.update(stack.env())
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            ingest_library(library=str(library), data_home=str(base))
            results = {}
            for name, workers in (("threads (flow process)", None), ("dask, 1 worker", 1), ("dask, 2 workers", 2)):
                home = out / f"run-{workers or 0}"
                shutil.rmtree(home, ignore_errors=True)
                shutil.copytree(base, home)
                seconds, summary = timed_score(home, args.model, args.levels, workers)
                assert summary["scored"] == args.videos and not summary["failed"], summary
                results[name] = seconds
                print(f"{name:24s} {seconds:7.1f} s  ({args.videos} videos)", flush=True)
            per_video = commit_cost(out / "run-0", args.commit_parts)
    finally:
        stack.stop()
    ratio = results["dask, 1 worker"] / results["dask, 2 workers"]
    print(f"2 workers / 1 worker throughput: {ratio:.2f}x")
    print(f"threads / dask 1 worker: {results['dask, 1 worker'] / results['threads (flow process)']:.2f}x")
    print(f"commit: {per_video * 1000:.1f} ms per video ({args.seconds:.0f} s clip, {args.levels + 1} speeds) "
          f"= {per_video * 1000:.0f} s per 1,000 videos")
    (out / "fanout.json").write_text(json.dumps({"seconds": results, "ratio_2_over_1": ratio,
                                                 "commit_s_per_video": per_video, "videos": args.videos,
                                                 "clip_seconds": args.seconds, "levels": args.levels}, indent=2))


if __name__ == "__main__":
    main()
