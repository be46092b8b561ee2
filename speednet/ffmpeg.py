"""Where ffmpeg lives, and a streaming H.264 writer on top of it.

A system ffmpeg is preferred when present (it may have hardware encoders); otherwise
the static build inside `imageio-ffmpeg` is used, so nothing needs a system install.
Set ``SPEEDNET_FFMPEG`` to force a particular binary.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

import ffmpeg
import numpy as np

from storage.atomic import partial_path  # stdlib-only: the one way this project names temp files


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run: $SPEEDNET_FFMPEG, else the system one, else imageio-ffmpeg's."""
    forced = os.environ.get("SPEEDNET_FFMPEG")
    if forced:
        return forced
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class VideoWriter:
    """Write RGB uint8 frames to an H.264 file by piping raw frames into ffmpeg.

    Frames stream through stdin, so memory stays bounded however long the video is.
    The file appears under its final name only once ffmpeg has finished (temp + rename),
    so a killed writer never leaves a half-written video behind.

    Use as a context manager::

        with VideoWriter(path, fps=25, width=320, height=180) as out:
            out.write(frame)            # (H, W, 3) uint8, or (N, H, W, 3)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        width: int,
        height: int,
        crf: int = 20,
        preset: str = "veryfast",
        gop_frames: int | None = None,
        extra_output_args: dict | None = None,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 with yuv420p needs even frame sizes; got {width}x{height} for {path}")
        self.path = Path(path)
        self.width, self.height = width, height
        self._tmp = partial_path(self.path)
        output_args = dict(vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset=preset, r=fps)
        if gop_frames:
            output_args["g"] = gop_frames
        output_args.update(extra_output_args or {})
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps)
        stream = ffmpeg.output(stream, str(self._tmp), **output_args).global_args("-hide_banner", "-loglevel", "error", "-nostdin")
        self._args = ffmpeg.compile(stream.overwrite_output(), cmd=ffmpeg_exe())
        self._proc: subprocess.Popen | None = None
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H, W, 3) or a batch (N, H, W, 3) of RGB uint8 frames."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: expected uint8 frames of shape (H={self.height}, W={self.width}, 3), "
                f"got {frames.dtype} {frames.shape[1:]}"
            )
        assert self._proc is not None and self._proc.stdin is not None, "use VideoWriter as a context manager"
        self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        self.frames_written += len(frames)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._proc is not None
        stderr = b""
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
            stderr = self._proc.stderr.read() if self._proc.stderr else b""
            code = self._proc.wait()
        finally:
            if exc_type is not None:
                self._proc.kill()
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return
        if code != 0:
            self._tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg failed writing {self.path} (exit {code}): {stderr.decode(errors='replace')[-2000:]}")
        os.replace(self._tmp, self.path)


def interpolate_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames → (N·factor − factor + 1, H, W, 3): ``factor − 1`` motion-compensated frames between each pair.

    Output frame k shows time k/factor in units of the input's frame interval, so output
    frame k·factor is input frame k (kept as it was). Uses ffmpeg's ``minterpolate`` filter
    (motion-compensated interpolation, bidirectional search, overlapped blocks); it is how
    a low-frame-rate source is brought to a rate the model judges at (speednet.timebase).
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    n, h, w, _ = frames.shape
    if factor == 1 or n < 2:
        return frames
    # minterpolate needs even sizes of at least 32 px for its blocks; pad by edge replication and crop back.
    ph, pw = max(32, h + h % 2), max(32, w + w % 2)
    padded = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge") if (ph, pw) != (h, w) else frames
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{pw}x{ph}", r=1)
    stream = stream.filter("minterpolate", fps=factor, mi_mode="mci", mc_mode="aobmc", me_mode="bidir", vsbmc=1)
    stream = ffmpeg.output(stream, "pipe:", format="rawvideo", pix_fmt="rgb24")
    args = ffmpeg.compile(stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin"), cmd=ffmpeg_exe())
    run = subprocess.run(args, input=padded.tobytes(), capture_output=True)
    if run.returncode != 0:
        raise RuntimeError(f"ffmpeg minterpolate failed (exit {run.returncode}): {run.stderr.decode(errors='replace')[-2000:]}")
    out = np.frombuffer(run.stdout, np.uint8).reshape(-1, ph, pw, 3)[:, :h, :w]
    wanted = (n - 1) * factor + 1
    if len(out) < wanted:  # the filter may end a frame early: repeat the last input frame
        out = np.concatenate([out, frames[-1:].repeat(wanted - len(out), axis=0)])
    return np.ascontiguousarray(out[:wanted])
