"""Render a speedup curve: pick source frames for each output time and stream them into ffmpeg.

- ``plan_frames`` turns S*(t) into, per output frame, the source frame(s) to show
  (nearest, or the two neighbours and a blend weight) and the speed to print over it;
  ``uniform_plan`` is the constant-rate baseline with the same number of output frames.
- ``render`` reads only the source frames the plans need, chunk by chunk in increasing
  order, through a ``read(indices)`` callback (an isolated decoder in practice), so
  memory is bounded by ``memory_mb`` whatever the length; frames go to ``VideoWriter``
  (H.264, atomic temp + rename). Two plans give a side-by-side comparison, each half
  labelled with its current speed.
- ``decode_frames_to_file`` is the worker side of ``read`` (run it through ``speednet.isolation``).
- ``mux_stretched_audio`` adds the source's audio, time-stretched with ffmpeg's ``atempo``
  segment by segment to follow S(t).

Frames come upright from the decoder and are written as they are, so rotated sources
keep their orientation.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ffmpeg
import numpy as np

from speednet.ffmpeg import VideoWriter, ffmpeg_exe
from speednet.media import ContainerInfo, VideoDecoder
from speednet.speedup import output_positions
from storage.atomic import partial_path  # stdlib-only: the one way this project names temp files

FrameReader = Callable[[np.ndarray], np.ndarray]  # sorted unique source indices -> (n, H, W, 3) uint8
ATEMPO_MAX = 100.0  # ffmpeg's atempo range is 0.5 … 100 per filter


@dataclass(frozen=True)
class RenderConfig:
    """How frames become a file; stored (with the curve settings) in `renders.params`."""

    fps: float | None = None  # output frame rate; None keeps the source's
    crf: int = 20  # x264 quality: visually near-lossless, about 1/3 the size of crf 14
    preset: str = "veryfast"
    blend: bool = False  # mix the two source frames around each output time instead of taking the nearest
    memory_mb: float = 128.0  # decoded frames held at once

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"output fps must be > 0, got {self.fps}")
        if self.memory_mb <= 0:
            raise ValueError(f"memory_mb must be > 0, got {self.memory_mb}")


@dataclass(frozen=True)
class FramePlan:
    """Output frame k shows (1 − weight[k])·source[lo[k]] + weight[k]·source[hi[k]], playing at speed[k]."""

    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray
    speed: np.ndarray
    label: str  # printed before the speed in a side-by-side render

    def __len__(self) -> int:
        return len(self.lo)


def _frame_at(positions: np.ndarray, n_frames: int) -> np.ndarray:
    """The source frame covering each position; a position on a boundary (integer rates) goes to the later frame."""
    return np.minimum(np.floor(positions + 1e-6).astype(np.int64), n_frames - 1)


def _plan(positions: np.ndarray, n_frames: int, blend: bool, speed: np.ndarray, label: str) -> FramePlan:
    if blend:  # frame i is centred at i + ½ in frame units
        x = np.clip(positions - 0.5, 0.0, n_frames - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_frames - 1)
        weight = (x - lo).astype(np.float32)
    else:
        lo = hi = _frame_at(positions, n_frames)
        weight = np.zeros(len(lo), np.float32)
    return FramePlan(lo, hi, weight, speed, label)


def plan_frames(speed: np.ndarray, fps: float, fps_out: float, blend: bool = False, label: str = "adaptive") -> FramePlan:
    """The source frames of every output frame of curve ``speed`` (see ``speedup.output_positions``)."""
    positions = output_positions(speed, fps, fps_out)
    return _plan(positions, len(speed), blend, np.asarray(speed)[_frame_at(positions, len(speed))], label)


def uniform_plan(n_frames: int, n_out: int, fps: float, fps_out: float, blend: bool = False) -> FramePlan:
    """Constant speed over ``n_out`` output frames: the uniform baseline of exactly the same duration."""
    rate = n_frames * fps_out / (n_out * fps)
    positions = (np.arange(n_out) + 0.5) * (n_frames / n_out)
    return _plan(positions, n_frames, blend, np.full(n_out, rate), "uniform")


def chunk_size(frame_bytes: int, sources_per_output: int, memory_mb: float) -> int:
    """Output frames per chunk so the decoded source frames fit in ``memory_mb``."""
    return max(1, int(memory_mb * 2 ** 20 // (frame_bytes * sources_per_output)))


def render(read: FrameReader, plans: list[FramePlan], frame_size: tuple[int, int], path: str | Path, fps_out: float,
           config: RenderConfig, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Encode the plans (one: a plain render; two: side by side, labelled) to ``path``; returns frames written.

    ``frame_size`` is the source's upright (height, width); odd sizes lose their last row or
    column (H.264 4:2:0 needs even sizes).
    """
    height, width = frame_size[0] - frame_size[0] % 2, frame_size[1] - frame_size[1] % 2
    n_out = len(plans[0])
    if any(len(p) != n_out for p in plans):
        raise ValueError("side-by-side plans must have the same number of output frames")
    # Two chunks are in memory at once: the next one decodes (in its worker) while this one encodes.
    step = chunk_size(height * width * 3, 4 * len(plans), config.memory_mb)
    starts = list(range(0, n_out, step))
    wanted = [np.unique(np.concatenate([np.r_[p.lo[s:s + step], p.hi[s:s + step]] for p in plans])) for s in starts]
    labels = len(plans) > 1
    with ThreadPoolExecutor(max_workers=1) as prefetch, \
            VideoWriter(path, fps=fps_out, width=width * len(plans), height=height, crf=config.crf,
                        preset=config.preset) as out:
        pending = prefetch.submit(read, wanted[0])
        for i, start in enumerate(starts):
            stop, needed = min(n_out, start + step), wanted[i]
            source = pending.result()
            if i + 1 < len(starts):
                pending = prefetch.submit(read, wanted[i + 1])
            if len(source) != len(needed):
                raise RuntimeError(f"{path}: the decoder returned {len(source)} frames for {len(needed)} requested")
            source = source[:, :height, :width]
            halves = [_compose(source, needed, p, start, stop, labels) for p in plans]
            out.write(halves[0] if len(halves) == 1 else np.concatenate(halves, axis=2))
            if on_progress:
                on_progress(stop, n_out)
        return out.frames_written


def _compose(source: np.ndarray, needed: np.ndarray, plan: FramePlan, start: int, stop: int, label: bool) -> np.ndarray:
    lo = source[np.searchsorted(needed, plan.lo[start:stop])]
    weight = plan.weight[start:stop, None, None, None]
    if np.any(weight > 0):
        hi = source[np.searchsorted(needed, plan.hi[start:stop])]
        frames = ((1.0 - weight) * lo + weight * hi + 0.5).astype(np.uint8)
    else:
        frames = lo  # fancy indexing copied it: labels may draw on it
    if label:
        for frame, speed in zip(frames, plan.speed[start:stop]):
            _draw_label(frame, f"{plan.label} {speed:.1f}x")
    return frames


def _draw_label(frame: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner of ``frame`` (in place), white on a dark outline."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    size = max(10, frame.shape[0] // 14)
    ImageDraw.Draw(image).text((size // 2, size // 3), text, font=ImageFont.load_default(size=size), fill="white",
                               stroke_width=max(1, size // 10), stroke_fill="black")
    frame[...] = np.asarray(image)


# -------------------------------------------------------------------- worker side (isolated process)
_open: dict[tuple, VideoDecoder] = {}


def _decoder(path: str, info: ContainerInfo) -> VideoDecoder:
    key = (path, info)
    if key not in _open:
        _open.clear()
        _open[key] = VideoDecoder(path, info, short_side_px=None)
    return _open[key]


def open_source(path: str, info: ContainerInfo) -> tuple[int, float, tuple[int, int]]:
    """(frame count, fps, upright (height, width)) of a file at full resolution, as the decoder sees it."""
    decoder = _decoder(path, info)
    return decoder.frame_count, decoder.fps, tuple(decoder.decode([0]).shape[1:3])


def decode_frames_to_file(path: str, info: ContainerInfo, indices: np.ndarray, out_file: str) -> tuple[int, ...]:
    """Write full-resolution upright frames at sorted ``indices`` to ``out_file`` (raw uint8); returns their shape.

    Full-size frames go through a file (in /dev/shm where there is one) rather than back
    through the worker pool's pipe: pickling them through it costs more than decoding.
    """
    frames = _decoder(path, info).decode(indices)
    frames.tofile(out_file)
    return frames.shape


def frame_transfer_dir(nbytes: int) -> str:
    """Where ``nbytes`` of decoded frames pass from worker to parent: memory-backed /dev/shm when it
    has room for them (containers often give it only 64 MB), else the temp folder."""
    try:
        shm = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK) and shm.f_bavail * shm.f_frsize > 4 * nbytes:
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()


# -------------------------------------------------------------------- audio
def tempo_commands(speed: np.ndarray, fps: float, segment_s: float = 0.5) -> list[tuple[float, float]]:
    """(source time, tempo) at which atempo changes: one per ``segment_s`` of source, merged where equal.

    Each segment's tempo is its source seconds over its output seconds, so the stretched
    audio lasts as long as the video, segment by segment.
    """
    speed = np.asarray(speed, dtype=np.float64)
    per = max(1, int(round(segment_s * fps)))
    commands: list[tuple[float, float]] = []
    for start in range(0, len(speed), per):
        part = speed[start:start + per]
        tempo = round(len(part) / float(np.sum(1.0 / part)), 4)
        if not commands or commands[-1][1] != tempo:
            commands.append((start / fps, tempo))
    return commands


def mux_stretched_audio(video_path: str | Path, source_path: str | Path, speed: np.ndarray, fps: float,
                        out_path: str | Path, timeout_s: float = 3600.0) -> None:
    """``out_path`` = the video of ``video_path`` + the source's first audio stream following ``speed``.

    One atempo filter is retuned over time by ``asendcmd`` (a command per segment, read from
    a file), so an hour of audio needs no hour-long filter graph; the result is padded or
    trimmed to the video's duration. Written to a temp name, then renamed.
    """
    if float(np.max(speed)) > ATEMPO_MAX:
        raise ValueError(f"audio can follow speeds up to {ATEMPO_MAX:g}x (ffmpeg atempo); this curve reaches "
                         f"{float(np.max(speed)):.1f}x: lower s_max or render without audio")
    out_path = Path(out_path)
    tmp = partial_path(out_path)
    duration = float(np.sum(1.0 / (fps * np.asarray(speed, dtype=np.float64))))
    commands = tempo_commands(speed, fps)
    with tempfile.TemporaryDirectory(prefix="speednet-atempo-") as folder:
        script = Path(folder) / "tempo.cmd"
        script.write_text("".join(f"{t:.4f} atempo tempo {tempo};\n" for t, tempo in commands))
        audio = (ffmpeg.input(str(source_path)).audio
                 .filter("asendcmd", f=str(script))
                 .filter("atempo", tempo=commands[0][1])
                 .filter("apad", whole_dur=f"{duration:.6f}")
                 .filter("atrim", end=f"{duration:.6f}"))
        stream = ffmpeg.output(ffmpeg.input(str(video_path)).video, audio, str(tmp), vcodec="copy", acodec="aac",
                               audio_bitrate="128k", movflags="+faststart")
        args = ffmpeg.compile(stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin").overwrite_output(),
                              cmd=ffmpeg_exe())
        try:
            run = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"{out_path}: adding audio took more than {timeout_s:.0f} s") from None
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{out_path}: ffmpeg could not add the time-stretched audio of {source_path} "
                           f"(exit {run.returncode}): {run.stderr[-2000:]}")
    os.replace(tmp, out_path)
