"""Shared fixtures: an isolated data home and Prefect state, and small real video files.

Prefect reads its settings at import, so the environment is set here, before any test
module imports a flow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="speednet-tests-"))
os.environ["SPEEDNET_HOME"] = str(_STATE / "home")
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("SPEEDNET_DASK_ADDRESS", None)
os.environ.pop("SPEEDNET_DATA_ROOT", None)  # never a developer's real bucket: its shards would be swept as unlisted
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)

import pytest  # noqa: E402

from speednet.ffmpeg import ffmpeg_exe  # noqa: E402
from storage.atomic import temp_name  # noqa: E402


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test with its message if it fails."""
    run = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def make_video(path: Path, *, seconds: float = 2.0, size: str = "160x90", fps: int = 25,
               source: str = "testsrc2", extra: tuple[str, ...] = ()) -> Path:
    """A real H.264 file from one of ffmpeg's generated sources (moving patterns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:rate={fps}", "-t", str(seconds),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "12", *extra, str(path))
    return path


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    """One file per kind of bad input, keyed by the error kind each must produce."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_video(folder / ".source.mp4", seconds=2.0)
    front = make_video(folder / ".faststart.mp4", seconds=3.0, extra=("-movflags", "+faststart"))
    files = {}
    files["truncated_no_index"] = folder / "truncated.mp4"
    files["truncated_no_index"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated_mid_stream"] = folder / "truncated_faststart.mp4"
    files["truncated_mid_stream"].write_bytes(front.read_bytes()[: front.stat().st_size // 2])
    files["zero_bytes"] = folder / "empty.mp4"
    files["zero_bytes"].write_bytes(b"")
    files["text"] = folder / "notes.mp4"
    files["text"].write_text("these are not the frames you are looking for\n" * 20)
    files["audio_only"] = folder / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", "-c:a", "aac", str(files["audio_only"]))
    files["still_image"] = folder / "picture.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(files["still_image"]))
    files["one_frame"] = folder / "one_frame.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25", "-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(files["one_frame"]))
    good.unlink()
    front.unlink()
    return files


# The error kind each bad input must be recorded with.
EXPECTED_KIND = {
    "truncated_no_index": "not_a_video",
    "truncated_mid_stream": "not_a_video",
    "zero_bytes": "not_a_video",
    "text": "not_a_video",
    "audio_only": "no_video_stream",
    "still_image": "not_a_video",
    "one_frame": "too_short",
}


def exited_pid() -> int:
    """The pid of a process that has run and been reaped: a killed writer."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover_partial(target: Path, pid: int, other_machine: bool = False) -> Path:
    """The temp file of ``target`` that writer ``pid`` (on this machine, or another) left when it was killed."""
    name = temp_name(target.name, pid, "0badc0de")
    if other_machine:
        name = re.sub(r"\.[0-9a-f]{8}-(\d+)-0badc0de", r".ffffffff-\1-0badc0de", name)
    leftover = target.with_name(name)
    leftover.write_bytes(b"half a file")
    return leftover


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Good videos of several shapes plus every bad-input kind (session-wide; do not modify)."""
    root = tmp_path_factory.mktemp("media")
    files = {
        "landscape": make_video(root / "landscape.mp4", seconds=3.0, size="192x108"),
        "rotated_source": make_video(root / "rotated_source.mp4", seconds=2.0, size="160x96", source="mandelbrot"),
        "fast": make_video(root / "fast60.mp4", seconds=2.0, size="160x90", fps=60),
    }
    files["rotated"] = root / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(files["rotated_source"]), "-c", "copy", str(files["rotated"]))
    files.update(make_bad_inputs(root / "bad"))
    return files


@pytest.fixture
def library(tmp_path) -> Path:
    """A small library: three good videos and every kind of bad input."""
    root = tmp_path / "library"
    make_video(root / "a.mp4", seconds=2.0)
    make_video(root / "nested" / "b.mp4", seconds=3.0, size="192x108", source="testsrc")
    make_video(root / "c.mov", seconds=2.0, source="rgbtestsrc")
    make_bad_inputs(root / "bad")
    (root / "notes.txt").write_text("not a video extension: ignored")
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh data home for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("SPEEDNET_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def pan_model():
    """A CPU-preset model trained (60 real steps) to call _pan.PAN_PX px/frame natural and twice that sped up.

    Loaded from the file ``python tests/_pan.py`` wrote, not trained here: what 60 steps
    learn depends on the CPU's float path, and a model that passes every test on one machine
    can fail three on another (seen with seed 0 on two machines).
    """
    from _pan import PAN_MODEL

    from speednet.model import load_checkpoint

    return load_checkpoint(PAN_MODEL)[0]


@pytest.fixture
def home_copy(scored_home, tmp_path, monkeypatch) -> tuple[Path, Path, str]:
    """A private copy of the module's ``scored_home`` (data home, library, model_id) set as SPEEDNET_HOME."""
    from _catalog import copy_home

    home, library, model_id = scored_home
    copy = copy_home(home, tmp_path / "home")
    monkeypatch.setenv("SPEEDNET_HOME", str(copy))
    return copy, library, model_id
