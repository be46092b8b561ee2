"""Ingest throughput as a ratio to decode-only throughput of the same files, same run.

Two ratios are printed. The whole-run ratio times one flow run over the library, so it
includes the fixed cost of a run (Prefect's flow start and end, discovery, the commit).
The steady-state ratio is the marginal rate: in each repeat the library and every eighth
file of it are both timed, back to back (in alternating order), for decode-only and for
the flow, and the ratio is (decode time of the extra frames) / (ingest time of the same
frames); the median over the repeats is printed. That is the throughput a large library
sees, where a run's fixed seconds no longer count. The fixed seconds the fit implies are
printed beside it, for ingest and for decode-only.

Also measures the two frame encodings of the shards (raw+zstd vs JPEG): bytes per clip,
write and read speed, so the default can be chosen by numbers.

    .venv/bin/python bench/ingest.py [--library DIR] [--generated 64] [--short-side-px 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="speednet-bench-"))
os.environ.setdefault("SPEEDNET_HOME", str(_TMP / "home"))
os.environ.setdefault("PREFECT_HOME", str(_TMP / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

import numpy as np  # noqa: E402

from speednet.clips import plan_clips  # noqa: E402
from speednet.ffmpeg import ffmpeg_exe  # noqa: E402
from speednet.media import VideoDecoder, probe_containers  # noqa: E402
from speednet.timebase import TimeBase  # noqa: E402
from speednet.samples import write_real_clips  # noqa: E402


def default_library(root: Path, count: int = 16) -> Path:
    """The real sample clips plus ``count`` generated 10 s videos at 640x360, 25 fps (camera-like sizes)."""
    write_real_clips(root)
    sources = ["testsrc2", "mandelbrot", "testsrc", "smptehdbars", "rgbtestsrc", "yuvtestsrc"]
    for i in range(count):
        # a per-file hue shift keeps the bytes (and so the video_ids) distinct
        spec = f"{sources[i % len(sources)]}=size=640x360:rate=25,hue=h={i * 20}:s={1 - 0.05 * (i // 18):.2f}"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", spec, "-t", "10",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", str(root / f"gen{i:02d}.mp4")],
                       check=True)
    return root


def decode_only(path: str, info, short_side_px: int, clip_frames: int) -> int:
    """Decode exactly the frames ingest stores for ``path`` (container already probed); returns how many."""
    decoder = VideoDecoder(path, info, short_side_px)
    clips = plan_clips(decoder.frame_count, clip_frames, TimeBase.for_fps(decoder.fps).step)
    needed = np.unique(clips)
    for start in range(0, len(needed), 256):
        decoder.decode(needed[start:start + 256])
    return int(clips.size)


def job_only(path: str, info, short_side_px: int, clip_frames: int, part_path: str) -> None:
    """The ingest flow's per-video job (decode + JPEG + staging part), without Prefect or the commit."""
    from tasks.decode_job import decode_to_part
    from tasks.ingest_params import IngestParams

    params = IngestParams(short_side_px=short_side_px, clip_frames=clip_frames, frame_encoding="jpeg")
    decode_to_part(path, Path(part_path).stem, info, params.as_dict(), part_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, help="videos to ingest (default: real samples + generated 10 s 640x360 videos)")
    parser.add_argument("--short-side-px", type=int, default=128)
    parser.add_argument("--clip-frames", type=int, default=48)
    parser.add_argument("--encodings", nargs="+", default=["jpeg", "raw"], choices=["jpeg", "raw"])
    parser.add_argument("--generated", type=int, default=64,
                        help="without --library: how many 10 s 640x360 videos to generate beside the real clips")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per side, interleaved; the best counts for whole runs, the median for the steady state")
    args = parser.parse_args()
    library = args.library or default_library(_TMP / "library", args.generated)
    from tasks.ingest import discover_videos  # here, not at the top: the pool's workers re-import this script

    files = discover_videos.fn(str(library))  # what ingest would find
    files.sort(key=os.path.getsize, reverse=True)  # largest first, in the reference too, as ingest schedules them
    workers = os.cpu_count() or 1
    print(f"library: {library} ({len(files)} files), short side {args.short_side_px}px, {workers} cores")

    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from flows.ingest import ingest_library

    infos = dict(zip(files, probe_containers(files)))  # probing is ingest's work, not decoding's: outside the reference
    few_files = files[::8]  # the marginal (steady-state) rate is (all - few) / (time(all) - time(few))
    few = _TMP / "few"
    few.mkdir()
    for i, path in enumerate(few_files):
        os.symlink(os.path.abspath(path), few / f"{i:04d}-{Path(path).name}")
    sides = {"all": (library, files)}
    if len(files) >= 16:  # fewer, and the difference of two timings is mostly noise
        sides["few"] = (few, few_files)
    empty = _TMP / "empty"
    empty.mkdir()
    ingest_library(library=str(empty))  # starts Prefect's ephemeral server outside the timing
    decode_s, job_s, frames, rows, steady = {}, float("inf"), {}, {}, []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        def decode(side_files: list[str]) -> int:
            n = len(side_files)
            return sum(pool.map(decode_only, side_files, [infos[f] for f in side_files], [args.short_side_px] * n,
                                [args.clip_frames] * n))

        decode(files[:workers])  # start the workers outside the timing
        # Interleaved, best of --repeats for every timing alike: this machine's speed drifts by
        # ±10% between runs, and a slow spell should not land on one side only. The steady
        # state pairs timings within a repeat (drift cancels) and alternates which side goes
        # first (a run's after-effects, e.g. page-cache writeback, land on both).
        for repeat in range(args.repeats):
            this_run = {}
            order = list(sides.items()) if repeat % 2 == 0 else list(sides.items())[::-1]
            for side, (_, side_files) in order:
                start = time.perf_counter()
                frames[side] = decode(side_files)
                this_run[("decode", side)] = time.perf_counter() - start
                decode_s[side] = min(decode_s.get(side, float("inf")), this_run[("decode", side)])
            parts = _TMP / f"job-{repeat}"
            parts.mkdir()
            start = time.perf_counter()
            list(pool.map(job_only, files, [infos[f] for f in files], [args.short_side_px] * len(files),
                          [args.clip_frames] * len(files), [str(parts / f"{i}.parquet") for i in range(len(files))]))
            job_s = min(job_s, time.perf_counter() - start)
            shutil.rmtree(parts)
            for encoding in args.encodings:
                for side, (root, _) in order:
                    if encoding != "jpeg" and side == "few":
                        continue  # the marginal rate is measured for the default encoding only
                    home = _TMP / f"home-{encoding}-{side}-{repeat}"
                    start = time.perf_counter()
                    summary = ingest_library(library=str(root), data_home=str(home), short_side_px=args.short_side_px,
                                             clip_frames=args.clip_frames, frame_encoding=encoding)
                    ingest_s = time.perf_counter() - start
                    this_run[(encoding, side)] = ingest_s
                    assert summary["clips"] * args.clip_frames == frames[side], (summary["clips"], frames[side])
                    key = (encoding, side)
                    if side == "all" and (key not in rows or ingest_s < rows[key]["s"]):
                        if key in rows:
                            shutil.rmtree(rows[key]["home"])  # keep only the best run's shards, for the read speed
                        rows[key] = dict(s=ingest_s, summary=summary, home=home)
                    else:
                        shutil.rmtree(home)
            if "jpeg" in args.encodings and "few" in sides:
                steady.append(_marginal(this_run, frames))
    total = frames["all"]
    decode_fps = total / decode_s["all"]
    print(f"\nbest of {args.repeats}, interleaved")
    print(f"decode-only : {total} clip-frames in {decode_s['all']:.2f} s = {decode_fps:,.0f} frames/s")
    print(f"job only    : {total} clip-frames in {job_s:.2f} s = {decode_s['all'] / job_s:.2f} x decode-only "
          f"(decode + JPEG + staging part in the same pool; no Prefect, no commit)")
    for encoding in args.encodings:
        r = rows[(encoding, "all")]
        read_s, read_clips = _read_speed(r["summary"]["shards"])
        fps = total / r["s"]
        print(f"ingest {encoding:<5}: {total} clip-frames in {r['s']:.2f} s = {fps:,.0f} frames/s "
              f"= {fps / decode_fps:.2f} x decode-only (whole run) | "
              f"{r['summary']['shard_bytes'] / r['summary']['clips'] / 2**20:.2f} MiB/clip | "
              f"read {read_clips / read_s:.1f} clips/s ({read_clips / read_s * args.clip_frames:,.0f} frames/s, 1 core)")
    usable = [m for m in steady if m is not None]
    if usable:
        ratios = sorted(m[0] for m in usable)
        print(f"steady state: ingest jpeg = {statistics.median(ratios):.2f} x decode-only "
              f"(marginal rate over the {total - frames['few']} clip-frames of all files but every eighth; "
              f"median of {len(ratios)} repeats, range {ratios[0]:.2f}-{ratios[-1]:.2f}) | fixed seconds of a run: "
              f"ingest {statistics.median(m[1] for m in usable):.1f} s, "
              f"decode-only {statistics.median(m[2] for m in usable):.1f} s")
    if len(usable) < len(steady):
        print(f"steady state: {len(steady) - len(usable)} repeat(s) left out, the larger side was not slower")
    shutil.rmtree(_TMP, ignore_errors=True)


def _marginal(times: dict, frames: dict) -> tuple[float, float, float] | None:
    """One repeat's steady-state ratio (throughput of ingest / of decode-only on the extra
    frames = decode seconds / ingest seconds for them), and the fixed seconds of an ingest
    and of a decode-only run that the straight line through the two sizes implies.

    None when the larger side was not slower (noise on a tiny library): no rate to read.
    """
    extra_frames = frames["all"] - frames["few"]
    decode_extra = times[("decode", "all")] - times[("decode", "few")]
    ingest_extra = times[("jpeg", "all")] - times[("jpeg", "few")]
    if extra_frames <= 0 or decode_extra <= 0 or ingest_extra <= 0:
        return None
    ingest_fixed = times[("jpeg", "all")] - ingest_extra * frames["all"] / extra_frames
    decode_fixed = times[("decode", "all")] - decode_extra * frames["all"] / extra_frames
    return decode_extra / ingest_extra, ingest_fixed, decode_fixed


def _read_speed(shards: list[str]) -> tuple[float, int]:
    from storage.shards import iter_clips

    start, count = time.perf_counter(), 0
    for shard in shards:
        for _ in iter_clips(shard):
            count += 1
    return time.perf_counter() - start, count


if __name__ == "__main__":
    sys.exit(main())
