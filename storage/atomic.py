"""Atomic file writes: write under a hidden temp name beside the target, then rename.

A reader never sees half a file, and a killed writer leaves only a hidden ``*.partial*``
file that cleanup can remove. Each writer gets its own temp name, so two runs writing the
same output at once (two score runs plotting the same video, two renders of one clip)
both succeed and the last rename wins, instead of one renaming the other's file away.

Standard library only, so that ``speednet``'s encoders may use it too (they import
nothing else from ``storage``).
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTIAL_GLOB = ".*.partial*"  # matches every name partial_path makes


def partial_path(path: str | Path) -> Path:
    """A temp name beside ``path``, hidden, unique to this writer, keeping the suffix (ffmpeg and matplotlib read it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")


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
