"""Media layer: identify, probe and decode videos.

- ``content_hash`` gives the ``video_id``: a renamed file keeps its id, an edited one gets a new id.
- ``probe_container`` asks ffmpeg about the container (codec, size, fps, rotation) in a
  child process with a time limit, so a hostile file cannot hang or crash the caller.
- ``VideoDecoder`` decodes frames with decord, resized on the decoder side to a requested
  short side and turned upright by the container's rotation. decord can hang or crash on
  broken files (see HAZARDS.md): call it through ``speednet.isolation`` for untrusted input.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speednet.errors import DecodeFailed, MediaError, NotAVideo, NoVideoStream, TooShort, VideoNotFound
from speednet.ffmpeg import ffmpeg_exe

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".3gp"}
)
# ffmpeg demuxers that read single pictures: a .mp4 that is really a PNG is no video.
_STILL_IMAGE_FORMATS = re.compile(r"Input #\d+, (\w+_pipe|image2|png|bmp|tiff)")
_HASH_CHUNK_BYTES = 4 << 20


def content_hash(path: str | Path) -> str:
    """The ``video_id`` of a file: a 128-bit BLAKE2b of its bytes, read in 4 MiB chunks."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise VideoNotFound(str(path), f"cannot read file: {e.strerror}") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class ContainerInfo:
    """What the container says about its first video stream (before any decoding)."""

    codec: str
    width: int  # as stored, before rotation
    height: int
    fps: float
    duration_s: float | None
    rotation_deg: int  # counter-clockwise turn needed to show the frame upright: 0, 90, 180, 270
    has_audio: bool


def probe_container(path: str | Path, timeout_s: float = 30.0) -> ContainerInfo:
    """Read codec, size, frame rate, duration and rotation from ffmpeg's header dump.

    Runs ``ffmpeg -i`` (no ffprobe needed, so the bundled static ffmpeg suffices) and raises
    a typed ``MediaError`` for a missing file, a non-video, or a file without a video stream.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise VideoNotFound(path, "no such file")
    try:
        run = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
            capture_output=True, text=True, errors="replace", timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise NotAVideo(path, f"ffmpeg could not read the header within {timeout_s:.0f} s") from None
    return parse_ffmpeg_header(path, run.stderr)


def probe_containers(paths: list[str | Path], timeout_s: float = 60.0) -> list[ContainerInfo | MediaError]:
    """``probe_container`` for many files with one ffmpeg process (a spawn costs ~30 ms of CPU per file).

    ffmpeg describes its inputs in order and stops at the first it cannot open; that file is
    probed alone (for its precise error) and the rest continue in a new call. Results, a
    ``ContainerInfo`` or the ``MediaError`` it would raise, are in the order of ``paths``.
    """
    paths = [str(p) for p in paths]
    results: list[ContainerInfo | MediaError] = []
    while len(results) < len(paths):
        batch = paths[len(results):]
        try:
            run = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *(a for p in batch for a in ("-i", p))],
                                 capture_output=True, text=True, errors="replace", timeout=timeout_s)
            headers = [_END_OF_HEADER.split(section)[0]
                       for section in re.split(r"(?m)^(?=Input #\d+, )", run.stderr) if section.startswith("Input #")]
        except subprocess.TimeoutExpired:
            headers = []
        for path, header in zip(batch, headers):
            results.append(_parse_or_error(path, header))
        if len(headers) < len(batch):
            results.append(_parse_or_error(batch[len(headers)], None))
    return results


# ffmpeg's complaints about the next input, or about the missing output, follow a header.
_END_OF_HEADER = re.compile(r"(?m)^(?:\[in#\d+|Error opening input|At least one output)")


def _parse_or_error(path: str, header: str | None) -> ContainerInfo | MediaError:
    try:
        return parse_ffmpeg_header(path, header) if header is not None else probe_container(path)
    except MediaError as e:
        return e


def parse_ffmpeg_header(path: str, header: str) -> ContainerInfo:
    """Turn the text ``ffmpeg -i`` prints into a ``ContainerInfo`` (see ``probe_container``)."""
    if "Invalid data found" in header or "moov atom not found" in header or not re.search(r"Input #\d+", header):
        last = header.strip().splitlines()[-1] if header.strip() else "empty output"
        raise NotAVideo(path, f"not a readable video container (ffmpeg: {last})")
    if _STILL_IMAGE_FORMATS.search(header):
        raise NotAVideo(path, "a still image, not a video")
    video_lines = [
        line for line in header.splitlines()
        if re.search(r"Stream #\d+:\d+.*: Video:", line) and "attached pic" not in line
    ]
    if not video_lines:
        raise NoVideoStream(path, "no video stream in the container")
    line = video_lines[0]
    codec = re.search(r"Video: (\w+)", line).group(1)
    size = re.search(r", (\d{2,5})x(\d{2,5})", line)
    fps = re.search(r", ([\d.]+)(k?) fps", line) or re.search(r", ([\d.]+)(k?) tbr", line)
    if not size or not fps:
        raise NotAVideo(path, f"video stream without a usable size or frame rate: {line.strip()}")
    fps_value = float(fps.group(1)) * (1000 if fps.group(2) else 1)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header)
    duration_s = int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)) if duration else None
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", header) or re.search(r"rotate\s*:\s*(-?\d+)", header)
    rotation_deg = 0
    if rotation:
        # ffmpeg prints the display matrix's counter-clockwise angle; the legacy `rotate` tag is clockwise.
        angle = float(rotation.group(1)) if "rotation of" in rotation.group(0) else -float(rotation.group(1))
        rotation_deg = int(round(angle / 90.0)) % 4 * 90
    return ContainerInfo(
        codec=codec, width=int(size.group(1)), height=int(size.group(2)), fps=fps_value,
        duration_s=duration_s, rotation_deg=rotation_deg,
        has_audio=bool(re.search(r"Stream #\d+:\d+.*: Audio:", header)),
    )


def scaled_size(width: int, height: int, short_side_px: int | None) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side_px``, aspect kept, both even.

    Never upscales: a source smaller than the request keeps its own size (rounded to even).
    """
    if short_side_px is None or min(width, height) <= short_side_px:
        return width - width % 2, height - height % 2
    scale = short_side_px / min(width, height)
    even = lambda x: max(2, int(round(x * scale / 2)) * 2)  # noqa: E731
    return even(width), even(height)


@dataclass(frozen=True)
class VideoProbe:
    """Everything the catalog records about a readable video."""

    path: str
    video_id: str
    size_bytes: int
    codec: str
    width: int  # upright (after rotation), at source resolution
    height: int
    fps: float
    frame_count: int  # frames the decoder sees
    duration_s: float
    rotation_deg: int
    has_audio: bool

    def as_row(self) -> dict:
        return asdict(self)


class VideoDecoder:
    """decord reader of one file, yielding upright uint8 RGB frames at a chosen short side.

    The resize happens inside the decoder (cheaper than decode-then-resize and it keeps
    4K sources from ballooning memory); rotation metadata is applied to the output.
    """

    def __init__(self, path: str | Path, info: ContainerInfo, short_side_px: int | None = None):
        import decord

        self.path = str(path)
        self.info = info
        out_w, out_h = scaled_size(info.width, info.height, short_side_px)
        # decord turns rotated sources upright itself, but its decoder-side resize garbles them
        # (wrong layout, even 4 channels): those decode at full size and are resized here instead.
        resize_in_decoder = info.rotation_deg == 0
        self._resize_to = None if resize_in_decoder or (out_w, out_h) == (info.width, info.height) else (
            (out_h, out_w) if info.rotation_deg in (90, 270) else (out_w, out_h))
        size_args = dict(width=out_w, height=out_h) if resize_in_decoder else {}
        try:
            self._reader = decord.VideoReader(self.path, num_threads=1, **size_args)
            self.frame_count = len(self._reader)
        except (RuntimeError, decord.DECORDError) as e:
            raise NotAVideo(self.path, f"decoder cannot open it: {_first_line(e)}") from None
        self.fps = float(self._reader.get_avg_fps()) or info.fps
        if self.frame_count < 1:
            raise TooShort(self.path, "the decoder finds no frames")

    def decode(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Frames at ``indices`` as an (N, H, W, 3) uint8 array, upright."""
        import decord

        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.frame_count):
            raise IndexError(f"{self.path}: frame indices outside 0..{self.frame_count - 1}")
        try:
            frames = self._reader.get_batch(indices).asnumpy()
        except (RuntimeError, decord.DECORDError) as e:
            raise DecodeFailed(self.path, f"decoding frames {indices[0]}..{indices[-1]} failed: {_first_line(e)}") from None
        if len(frames) != len(indices):
            raise DecodeFailed(self.path, f"asked for {len(indices)} frames, the decoder returned {len(frames)}")
        if self._resize_to is not None:
            from PIL import Image

            frames = np.stack([np.asarray(Image.fromarray(f).resize(self._resize_to, Image.BILINEAR, reducing_gap=2.0))
                               for f in frames])
        return frames

    def probe(self, video_id: str) -> VideoProbe:
        """The catalog record of this file, combining the container header and the decoder's count."""
        upright = self.info.rotation_deg in (90, 270)
        w, h = (self.info.height, self.info.width) if upright else (self.info.width, self.info.height)
        return VideoProbe(
            path=self.path, video_id=video_id, size_bytes=os.path.getsize(self.path), codec=self.info.codec,
            width=w, height=h, fps=self.fps, frame_count=self.frame_count,
            duration_s=self.frame_count / self.fps, rotation_deg=self.info.rotation_deg,
            has_audio=self.info.has_audio,
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[-1] if text else type(error).__name__
    return re.sub(r"^\[[\d:]+\] \S+: ", "", line)[:300]
