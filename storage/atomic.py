"""Atomic file writes: write under a hidden temp name beside the target, then rename.

A reader never sees half a file. Each writer gets its own temp name, which names its
machine and process, so two runs writing the same output at once (two score runs plotting
the same video, two ingest runs staging the same new file) both succeed and the last
rename wins, instead of one renaming the other's file away. A writer that was killed
leaves its temp file behind; the first write into that folder by a later process removes
it once the writer's process is gone (ingest's commit also sweeps the staging folder).

Standard library only, so that ``speednet``'s encoders and checkpoints may use it too (they
import nothing else from ``storage``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTIAL_GLOB = ".*.partial*"  # matches every name partial_path makes
_NAME_MAX_BYTES = 255  # the longest file name of ext4, xfs, btrfs, APFS
_WRITER = re.compile(r"\.(?P<machine>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?$")
_swept: set[Path] = set()


def partial_path(path: str | Path) -> Path:
    """A fresh temp name beside ``path`` for this writer alone: hidden, and keeping the suffix.

    ffmpeg and matplotlib choose the output format from the suffix. Note that
    ``Path.glob("*.png")`` matches hidden files: skip names starting with a dot. The first
    call per folder in a process removes dead writers' temp files there.
    """
    path = Path(path)
    if path.parent not in _swept:
        remove_dead_partials(path.parent)
        _swept.add(path.parent)
    return path.with_name(temp_name(path.name, os.getpid(), secrets.token_hex(4)))


def temp_name(name: str, pid: int, token: str) -> str:
    """The temp file name of writer ``pid`` on this machine for the file ``name`` (shortened to fit a file name)."""
    suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= 16 else ""
    tail = f".{_machine()}-{pid}-{token}.partial{suffix}"
    room = _NAME_MAX_BYTES - 1 - len(tail.encode())
    head = name.encode()[:room].decode(errors="ignore")  # cut on a character boundary
    return f".{head}{tail}"


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


def remove_dead_partials(folder: str | Path) -> list[Path]:
    """Delete the temp files in ``folder`` whose writer has exited; the ones deleted.

    Only writers on this machine (same host name, boot and process namespace) can be
    checked; live writers' files stay, and so do other machines' (their own next write
    into the folder removes them).
    """
    removed = []
    for tmp in Path(folder).glob(PARTIAL_GLOB):
        writer = _WRITER.search(tmp.name)
        if writer and writer["machine"] == _machine() and not _alive(int(writer["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@functools.cache
def _machine() -> str:
    """8 hex digits that differ between machines and between containers sharing a host name."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    try:
        pid_namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_namespace = ""
    identity = "|".join([socket.gethostname(), read("/proc/sys/kernel/random/boot_id"), pid_namespace])
    return hashlib.blake2b(identity.encode(), digest_size=4).hexdigest()


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
