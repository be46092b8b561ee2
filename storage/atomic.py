"""Atomic file writes: write under a hidden temp name beside the target, then rename.

A reader never sees half a file. Each writer gets its own temp name, which names its host
and process, so two runs writing the same output at once (two score runs plotting the
same video, two ingest runs staging the same new file) both succeed and the last rename
wins, instead of one renaming the other's file away. A writer that was killed leaves its
temp file behind; the next writer of the same target removes it once that process is
gone, which is what reusing one fixed temp name used to do implicitly.

Standard library only, so that ``speednet``'s encoders may use it too (they import
nothing else from ``storage``).
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTIAL_GLOB = ".*.partial*"  # matches every name partial_path makes
_WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?$")


def partial_path(path: str | Path) -> Path:
    """A fresh temp name beside ``path`` for one writer; dead writers' temp files of ``path`` are removed first.

    The name is hidden (a leading dot) and keeps the suffix, from which ffmpeg and matplotlib
    choose the format. Note that ``Path.glob("*.png")`` does match hidden files.
    """
    path = Path(path)
    remove_dead_partials(path.parent, path.name)
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_dead_partials(folder: str | Path, target: str | None = None) -> list[Path]:
    """Delete the temp files in ``folder`` (of file ``target`` only, if named) whose writer has exited; those deleted.

    A writer is a process on this host; live writers' files stay, and so do other hosts'
    (a process there cannot be checked from here).
    """
    pattern = f".{glob.escape(target)}.*.partial*" if target else PARTIAL_GLOB
    removed = []
    for tmp in Path(folder).glob(pattern):
        writer = _WRITER.search(tmp.name)
        if writer and writer["host"] == _host() and not _alive(int(writer["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    return stat[stat.rindex(")") + 2] != "Z"
