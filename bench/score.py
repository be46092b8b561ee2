"""Scoring benchmark: throughput against decode-only, dense/budget against sliding, memory against
video length, and the score views' SQL at ~10M frame_scores rows. Every figure that matters is a
ratio to a reference measured in the same run (no timed asserts; the machine may be shared).

    .venv/bin/python bench/score.py [--checkpoint PATH] [--sections throughput,modes,memory,sql] [--files N]

Sections:
- throughput: the real sample clips plus 10 synthetic ones, scored with the default ScoreConfig
  (sliding, levels 10, stride 4): video-seconds per wall-second, against decode-only of the same
  files at the same resolution through the same isolated path (probe_container, then
  tasks.score_job.frame_count / decode_range through speednet.isolation.run_isolated, in chunks
  of chunk_frames: exactly the decode score_file does), with the decode pool and model warm.
- modes: dense and budget runs of the same files; wall-time ratios sliding/dense and
  sliding/budget and agreement with sliding (correlation of V(t) and of P, max |ΔP|, share of
  frames with identical V).
- memory: 10 and 60 minute testsrc2 videos (cached under var/bench/), each scored in its own
  subprocess with a cheap config; peak RSS of the scorer and of its decode workers, and
  Scores.peak_buffer_frames: neither should grow with the length.
- sql: a throw-away catalog (real schema) with ~10M synthetic frame_scores rows; load time, file
  size, bytes per row, and best/median of 3 runs of the example queries (target < 1 s each).

The model is --checkpoint, else the latest registered model of --catalog, else a seeded random
cpu-preset model (agreement figures are then not meaningful: its output is nearly constant).
Run it with OMP_WAIT_POLICY=passive on a shared machine (set here when unset).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

# Heavy imports (torch, prefect, duckdb) live inside functions: the decode pool spawns workers that
# re-import this file as __mp_main__, and they should stay as light as in production.
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "var" / "samples"
BENCH_DIR = ROOT / "var" / "bench"
SECTIONS = ("throughput", "modes", "memory", "sql")
RANDOM_SEED = 0


# ---------------------------------------------------------------- model

def load_bench_model(checkpoint: str | None, catalog_path: str):
    """(model, description, meaningful): --checkpoint, else the latest registered model, else a seeded random one."""
    from tasks.score import load_model, resolve_model

    if checkpoint:
        return load_model(str(checkpoint)), f"checkpoint {checkpoint}", True
    try:
        ref = resolve_model(catalog_path)
        return load_model(ref.checkpoint_path), f"latest registered model {ref.model_id[:12]} ({ref.checkpoint_path})", True
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        reason = str(e).split(":")[0]
        return random_model(), f"RANDOM cpu-preset model, seed {RANDOM_SEED} ({reason})", False


def random_model():
    import torch

    from speednet.model import build_speednet

    torch.manual_seed(RANDOM_SEED)
    return build_speednet(preset="cpu").eval()


# ---------------------------------------------------------------- helpers

def sample_files(limit: int | None) -> list[str]:
    real = sorted(str(p) for p in (SAMPLES / "real").glob("[!.]*.mp4"))
    if not real:
        sys.exit(f"no real sample clips under {SAMPLES / 'real'}: run `.venv/bin/python -m flows.cli samples var/samples` first")
    synthetic = sorted(str(p) for p in (SAMPLES / "synthetic").glob("scene-00*.mp4"))[:10]
    files = real + synthetic
    return files[:limit] if limit else files


def decode_only(path: str, short_side_px: int, chunk_frames: int, timeout_s: float = 300.0,
                max_frames: int | None = None) -> tuple[int, float]:
    """Decode every frame of ``path`` (or the first ``max_frames``) exactly as score_file does: isolated
    worker, chunks of ``chunk_frames``. Returns the file's (frames, fps)."""
    from speednet.isolation import run_isolated
    from speednet.media import probe_container
    from tasks.score_job import decode_range, frame_count

    info = probe_container(path)
    n_frames, fps = run_isolated(frame_count, path, info, short_side_px, path=path, timeout_s=timeout_s)
    for start in range(0, min(n_frames, max_frames or n_frames), chunk_frames):
        stop = min(n_frames, start + chunk_frames)
        frames = run_isolated(decode_range, path, info, short_side_px, start, stop, path=path, timeout_s=timeout_s)
        if len(frames) != stop - start:
            raise RuntimeError(f"{path}: {len(frames)} frames for {start}..{stop - 1}")
    return n_frames, fps


def warm(model, path: str, chunk_frames: int, max_frames: int | None = None) -> None:
    """Start the decode workers, decode (the start of) one file in each, and run the model once, outside every timing."""
    import torch

    from speednet import isolation
    from speednet.model import normalize_uint8

    isolation.warm_up()
    for _ in range(isolation.default_workers()):  # each worker imports decord on its first job
        decode_only(path, model.config.input_size, chunk_frames, max_frames=max_frames)
    T, side = model.config.clip_frames, model.config.input_size
    with torch.no_grad():
        model.logit_map(normalize_uint8(np.zeros((2, T, side, side * 16 // 9, 3), np.uint8)))


def pearson(a: np.ndarray, b: np.ndarray) -> str:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return "n/a (constant)"
    return f"{np.corrcoef(a, b)[0, 1]:.4f}"


def mib(kib: int) -> float:
    return kib / 1024.0


# ---------------------------------------------------------------- 1. throughput

def section_throughput(model, files: list[str], cache: dict) -> None:
    from speednet.scoring import ScoreConfig
    from tasks.score import score_file

    config = ScoreConfig()
    side = model.config.input_size
    print(f"\n== 1. Throughput: default ScoreConfig (mode={config.mode}, levels={config.levels}, stride={config.stride}, "
          f"batch={config.batch_size}, chunk={config.chunk_frames}) vs decode-only ==")
    print(f"decode path: probe_container + tasks.score_job.frame_count/decode_range via speednet.isolation.run_isolated, "
          f"chunks of {config.chunk_frames}, short side {side}px, every frame (best of 2 passes)")
    warm(model, files[0], config.chunk_frames)

    decode_s = {f: float("inf") for f in files}
    info = {}
    for _ in range(2):
        for f in files:
            start = time.perf_counter()
            info[f] = decode_only(f, side, config.chunk_frames)
            decode_s[f] = min(decode_s[f], time.perf_counter() - start)

    rows = []
    for f in files:
        result = score_file(f, model, config)
        cache[("sliding", f)] = result
        rows.append((f, result))

    print(f"{'file':<22} {'frames':>7} {'video s':>8} {'decode s':>9} {'score s':>8} {'score v-s/s':>12} {'windows':>8}")
    total_video = total_score = total_decode = 0.0
    for f, r in rows:
        video_s = r.frames / r.fps
        total_video, total_score, total_decode = total_video + video_s, total_score + r.seconds, total_decode + decode_s[f]
        print(f"{Path(f).name:<22} {r.frames:>7} {video_s:>8.2f} {decode_s[f]:>9.3f} {r.seconds:>8.2f} "
              f"{video_s / r.seconds:>12.2f} {r.scores.windows_run:>8}")
    frames = sum(r.frames for _, r in rows)
    score_rate, decode_rate = total_video / total_score, total_video / total_decode
    print(f"total: {len(rows)} files, {frames} frames, {total_video:.1f} video-s")
    print(f"  decode-only : {total_decode:7.2f} s = {decode_rate:8.2f} video-s/s ({frames / total_decode:,.0f} frames/s)")
    print(f"  scoring     : {total_score:7.2f} s = {score_rate:8.2f} video-s/s ({frames / total_score:,.0f} frames/s)")
    print(f"  ratio scoring/decode throughput = {score_rate / decode_rate:.4f} (decode is {total_decode / total_score:.1%} "
          f"of scoring wall time)")


# ---------------------------------------------------------------- 2. modes

def section_modes(model, files: list[str], cache: dict, meaningful: bool) -> None:
    from speednet.scoring import ScoreConfig
    from tasks.score import score_file

    configs = {"sliding": ScoreConfig(), "dense": ScoreConfig(mode="dense"), "budget": ScoreConfig(budget=True)}
    print("\n== 2. Dense vs sliding, budget vs full (same files; sliding = reference) ==")
    if not meaningful:
        print("NOTE: random model -> its P(natural) is nearly constant; the agreement figures below are NOT meaningful "
              "(wall-time ratios are)")
    if not any(key[0] == "sliding" for key in cache):
        warm(model, files[0], configs["sliding"].chunk_frames)
    for f in files:
        for name, config in configs.items():
            if (name, f) not in cache:
                cache[(name, f)] = score_file(f, model, config)

    ref = [cache[("sliding", f)] for f in files]
    ref_s = sum(r.seconds for r in ref)
    rho = configs["sliding"].rho
    print(f"{'mode':<8} {'wall s':>8} {'sliding/mode':>13} {'windows run':>12} {'skipped':>8} {'corr V':>15} "
          f"{'corr P':>15} {'max|dP|':>8} {'V identical':>12}")
    for name in configs:
        got = [cache[(name, f)] for f in files]
        wall = sum(r.seconds for r in got)
        v_ref, v_got, p_ref, p_got = [], [], [], []
        for a, b in zip(ref, got):
            v_ref.append(a.scores.speediness(rho))
            v_got.append(b.scores.speediness(rho))
            common = np.intersect1d(a.scores.speeds, b.scores.speeds)  # exact: both come from config.speeds
            p_ref.append(a.scores.p_natural[np.isin(a.scores.speeds, common)].ravel())
            p_got.append(b.scores.p_natural[np.isin(b.scores.speeds, common)].ravel())
        v_ref, v_got, p_ref, p_got = map(np.concatenate, (v_ref, v_got, p_ref, p_got))
        print(f"{name:<8} {wall:>8.2f} {ref_s / wall:>13.2f} {sum(r.scores.windows_run for r in got):>12} "
              f"{sum(r.scores.windows_skipped for r in got):>8} {pearson(v_ref, v_got):>15} {pearson(p_ref, p_got):>15} "
              f"{np.abs(p_ref - p_got).max():>8.4f} {np.mean(v_ref == v_got):>12.1%}")
    print(f"(V over {len(v_ref)} frames of {len(files)} files; P over all frames x speeds = {len(p_ref)} values)")


# ---------------------------------------------------------------- 3. memory

def long_video(minutes: int) -> Path:
    """A cached testsrc2 128x72 30 fps H.264 video of ``minutes`` minutes under var/bench/."""
    from speednet.ffmpeg import ffmpeg_exe
    from storage.atomic import atomic_write

    path = BENCH_DIR / f"testsrc2-128x72-30fps-{minutes}min.mp4"
    if path.exists():
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_write(path) as partial:
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                        "-i", "testsrc2=size=128x72:rate=30", "-t", str(minutes * 60), "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p", str(partial)], check=True)
    print(f"  generated {path.relative_to(ROOT)} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return path


def vm_hwm_kib(pid: int | str = "self") -> int:
    """Peak resident set of a process's current image (VmHWM), in KiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def child_pids() -> list[int]:
    """Live child processes of this one (the decode workers, pebble's helpers)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def memory_child(args: argparse.Namespace) -> None:
    """In its own process: score one file and print its peak memory and its decode workers' as one JSON line.

    ru_maxrss of a process started by fork + exec includes the RSS of the process that launched it
    (Linux keeps the pre-exec peak), so VmHWM of /proc/PID/status is reported beside it.
    """
    from speednet import isolation, scoring
    from storage.scores import frame_score_table
    from tasks.score import score_file

    model = random_model() if args.model == "random" else load_bench_model(args.model, "")[0]
    config = scoring.ScoreConfig(levels=args.memory_levels, stride=args.memory_stride, mode=args.memory_mode)
    warm(model, args.memory_child, config.chunk_frames, max_frames=config.chunk_frames)
    before_kib = vm_hwm_kib()
    result = score_file(args.memory_child, model, config, decode_timeout_s=600.0)
    # what score_video builds in memory before writing: V(t), segments, the long-format rows
    v = result.scores.speediness(config.rho)
    segs = list(scoring.segments(v, result.scores.p_natural[0], result.fps))
    rows = frame_score_table("0" * 32, "1" * 32, result.scores.speeds, result.scores.p_natural, result.fps)
    workers = [vm_hwm_kib(pid) for pid in child_pids()]
    print(json.dumps({"frames": result.frames, "fps": result.fps, "seconds": result.seconds,
                      "windows_run": result.scores.windows_run, "peak_buffer_frames": result.scores.peak_buffer_frames,
                      "segments": len(segs), "rows": rows.num_rows, "before_kib": before_kib, "hwm_kib": vm_hwm_kib(),
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "workers_kib": sorted(w for w in workers if w)}))
    isolation.shutdown()


def section_memory(args: argparse.Namespace, model_arg: str) -> None:
    print(f"\n== 3. Memory vs length: ScoreConfig(levels={args.memory_levels}, stride={args.memory_stride}, "
          f"mode={args.memory_mode!r}), each length in its own subprocess ==")
    videos = {minutes: long_video(minutes) for minutes in (10, 60)}
    out = {}
    for minutes, path in videos.items():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(path), "--model", model_arg,
               "--memory-levels", str(args.memory_levels), "--memory-stride", str(args.memory_stride),
               "--memory-mode", args.memory_mode]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if run.returncode != 0:
            print(f"  {minutes} min: child failed (rc {run.returncode}):\n{run.stderr[-3000:]}")
            return
        out[minutes] = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"{'length':>7} {'frames':>7} {'score s':>8} {'v-s/s':>7} {'windows':>8} {'peak buf':>9} {'pre MiB':>8} "
          f"{'peak MiB':>9} {'ru_maxrss MiB':>14} {'workers peak MiB':>17}")
    for minutes, r in out.items():
        workers = "/".join(f"{mib(w):.0f}" for w in r["workers_kib"]) or "n/a"
        print(f"{minutes:>5}mn {r['frames']:>7} {r['seconds']:>8.1f} {r['frames'] / r['fps'] / r['seconds']:>7.1f} "
              f"{r['windows_run']:>8} {r['peak_buffer_frames']:>9} {mib(r['before_kib']):>8.1f} {mib(r['hwm_kib']):>9.1f} "
              f"{mib(r['maxrss_kib']):>14.1f} {workers:>17}")
    a, b = out[10], out[60]
    wa, wb = max(a["workers_kib"], default=0), max(b["workers_kib"], default=0)
    print(f"60/10 min: scorer peak RSS {b['hwm_kib'] / a['hwm_kib']:.3f}x, largest decode worker "
          f"{(wb / wa if wa else float('nan')):.3f}x, peak buffer frames {b['peak_buffer_frames'] / a['peak_buffer_frames']:.3f}x "
          f"(target ~1)")
    print("(peak/pre = VmHWM of the scoring subprocess after scoring / after model load + warm-up; ru_maxrss also "
          "counts the launching bench process's RSS, which Linux carries over exec; workers = VmHWM of each live "
          "child process)")


# ---------------------------------------------------------------- 4. SQL

QUERIES = {
    "Q1": "SELECT path, start_s, end_s, duration_s FROM slow_motion_segments WHERE duration_s > 2 LIMIT 20",
    "Q2": "SELECT path, mean_speediness, watch_time_s FROM speedupable_videos LIMIT 10",
    "Q3": "SELECT * FROM model_comparison",
    "Q4": "SELECT floor(t_seconds) AS second, median(speediness) AS v FROM frame_speediness "
          "WHERE video_id = ? AND model_id = ? GROUP BY 1 ORDER BY 1",
    "Q5": "SELECT speed, avg(p_natural) FROM frame_scores GROUP BY speed ORDER BY speed",
    "Q6": "SELECT video_id, avg(p_natural) FROM frame_scores WHERE speed > 1.9 AND speed < 2.0 "
          "GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
}


def section_sql(args: argparse.Namespace) -> None:
    from storage import catalog

    n_videos, n_models, n_frames, n_speeds = args.sql_videos, 2, args.sql_frames, 11
    path = BENCH_DIR / "score-sql.duckdb"
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    print(f"\n== 4. SQL: {n_videos} videos x {n_models} models x {n_frames} frames x {n_speeds} speeds = "
          f"{n_videos * n_models * n_frames * n_speeds:,} frame_scores rows, real schema, {path.relative_to(ROOT)} ==")
    con = catalog.connect(path)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    start = time.perf_counter()
    con.execute("""
        CREATE TEMP TABLE pairs AS
        SELECT v AS vi, md5('video-' || v) AS video_id, m AS mi, md5('model-' || m) AS model_id
        FROM range(?) a(v), range(?) b(m)""", [n_videos, n_models])
    con.execute("""
        INSERT INTO models SELECT DISTINCT model_id, '/models/' || model_id || '.pt', 'cpu', '{}', 'snapshot', 80, 20, '{}',
               TIMESTAMP '2025-01-01' + INTERVAL (mi) DAY FROM pairs""")
    con.execute("""
        INSERT INTO videos (video_id, path, size_bytes, codec, width, height, fps, frame_count, duration_s, status,
                            short_side_px, clip_frames, ingested_at)
        SELECT DISTINCT video_id, '/library/video-' || lpad(vi::VARCHAR, 4, '0') || '.mp4', 10000000, 'h264', 1280, 720,
               30.0, ?, ? / 30.0, 'ingested', 64, 16, TIMESTAMP '2025-01-01' FROM pairs""", [n_frames, n_frames])
    con.execute("""
        INSERT INTO video_speediness (video_id, model_id, path, status, score_params, rho, fps, frames, duration_s,
            mean_speediness, median_speediness, p10_speediness, p90_speediness, max_speediness, frac_slow_motion,
            frac_sped_up, windows_run, windows_skipped, seconds, scored_at)
        SELECT video_id, model_id, '/library/video-' || lpad(vi::VARCHAR, 4, '0') || '.mp4', 'scored', '{}', 0.5, 30.0,
               ?, ? / 30.0, 4 * random(), 4 * random(), random(), 4 + 4 * random(), 9.31, random(), random() / 4,
               1000, 0, 10.0, TIMESTAMP '2025-02-01' + INTERVAL (vi) MINUTE FROM pairs""", [n_frames, n_frames])
    # ~one segment per 5 s, kinds in turn, durations 0.5..5 s
    con.execute("""
        INSERT INTO segments
        SELECT video_id, model_id, k * 5.0, k * 5.0 + 0.5 + 4.5 * random(),
               ['natural', 'slow_motion', 'sped_up'][1 + (k + vi) % 3], 4 * random(), random()
        FROM pairs, range(CAST(? / 150 AS BIGINT)) s(k)""", [n_frames])
    meta_s = time.perf_counter() - start
    # rows as score_video writes them: per (video, model), speed-major, frames in order; P smooth in t, lower at
    # high speed, with a little noise (float32 curves, like the real interpolated ones)
    start = time.perf_counter()
    con.execute("""
        INSERT INTO frame_scores
        SELECT p.video_id, p.model_id, f.frame::INTEGER, f.frame / 30.0, pow(1.25, s.level)::REAL,
               greatest(0, least(1, 1 / (1 + exp(-(1.5 - 0.6 * s.level + 2 * sin(f.frame / (40.0 + p.vi % 50) + p.mi))))
                                    + 0.02 * (random() - 0.5)))::REAL
        FROM pairs p, range(?) s(level), range(?) f(frame)
        ORDER BY p.vi, p.mi, s.level, f.frame""", [n_speeds, n_frames])
    con.execute("CHECKPOINT")
    load_s = time.perf_counter() - start
    rows = con.execute("SELECT count(*) FROM frame_scores").fetchone()[0]
    compression = con.execute("""
        SELECT column_name, string_agg(DISTINCT compression, '/' ORDER BY compression)
        FROM pragma_storage_info('frame_scores') WHERE segment_type <> 'VALIDITY' GROUP BY column_name
        ORDER BY min(column_id)""").fetchall()
    con.close()
    size = path.stat().st_size
    print(f"load: metadata tables {meta_s:.2f} s, frame_scores {rows:,} rows in {load_s:.2f} s "
          f"({rows / load_s / 1e6:.2f} M rows/s, incl. ORDER BY + CHECKPOINT); DuckDB threads={threads}")
    print(f"file: {size / 2**20:.1f} MiB = {size / rows:.2f} bytes per frame_scores row (whole file / rows); "
          f"compression: {', '.join(f'{c}={k}' for c, k in compression)}")

    con = catalog.connect(path, read_only=True)
    video_id, model_id = con.execute(  # Q4's video: the middle one, scored by the latest model
        "SELECT v.video_id, (SELECT model_id FROM latest_model) FROM videos v ORDER BY v.path LIMIT 1 OFFSET ?",
        [n_videos // 2]).fetchone()
    print(f"{'query':<6} {'rows':>6} {'best s':>8} {'median s':>9} {'target':>8}")
    misses = []
    for name, sql in QUERIES.items():
        params = [video_id, model_id] if "?" in sql else []
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = con.execute(sql, params).fetchall()
            times.append(time.perf_counter() - start)
        verdict = "PASS" if max(times) < 1.0 else ("MISS" if min(times) >= 1.0 else "PASS (best)")
        print(f"{name:<6} {len(out):>6} {min(times):>8.3f} {statistics.median(times):>9.3f} {'< 1 s':>8} {verdict}")
        if verdict == "MISS":
            misses.append((name, sql, params))
    for name, sql, params in misses:
        plan = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
        print(f"\n-- EXPLAIN ANALYZE {name}:\n{plan[0][-1]}")
    con.close()
    if not args.keep_sql:
        for p in (path, path.with_name(path.name + ".wal")):
            p.unlink(missing_ok=True)


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: latest registered model of --catalog)")
    parser.add_argument("--catalog", default=str(ROOT / "var" / "catalog.duckdb"))
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--files", type=int, help="use only the first N sample files (real first, then synthetic)")
    parser.add_argument("--memory-levels", type=int, default=2)
    parser.add_argument("--memory-stride", type=int, default=256)
    parser.add_argument("--memory-mode", default="sliding", choices=["sliding", "dense"])
    parser.add_argument("--sql-videos", type=int, default=100)
    parser.add_argument("--sql-frames", type=int, default=4500, help="frames per (video, model); 2 models")
    parser.add_argument("--keep-sql", action="store_true", help="keep var/bench/score-sql.duckdb afterwards")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {','.join(SECTIONS)}")

    import torch

    from speednet.isolation import default_workers

    model, described, meaningful = load_bench_model(args.checkpoint, args.catalog)
    c = model.config
    print(f"model: {described}")
    print(f"  clip_frames={c.clip_frames} input_size={c.input_size} width={c.width} stem_temporal_stride={c.stem_temporal_stride}")
    if not meaningful:
        print("  WARNING: random model: agreement figures (section 2) are not meaningful; throughput and memory are")
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, decode workers {default_workers()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.2f}")

    needs_files = {"throughput", "modes"} & set(sections)
    files = sample_files(args.files) if needs_files else []
    if files:
        print(f"files: {len(files)} ({', '.join(Path(f).name for f in files)})")
    cache: dict = {}
    took = {}
    for section in sections:
        start = time.perf_counter()
        if section == "throughput":
            section_throughput(model, files, cache)
        elif section == "modes":
            section_modes(model, files, cache, meaningful)
        elif section == "memory":
            section_memory(args, str(args.checkpoint or "") or ("random" if not meaningful else _model_path(args)))
        elif section == "sql":
            section_sql(args)
        took[section] = time.perf_counter() - start
    print("\n== section wall times ==")
    print("  ".join(f"{name} {s:.1f} s" for name, s in took.items()))


def _model_path(args: argparse.Namespace) -> str:
    """The checkpoint the parent resolved (latest registered model), for the memory subprocess."""
    from tasks.score import resolve_model

    return resolve_model(args.catalog).checkpoint_path


if __name__ == "__main__":
    sys.exit(main())
