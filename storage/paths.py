"""Where speednet keeps its state: one data folder, laid out the same for every flow.

The folder is ``$SPEEDNET_HOME`` or ``<repo>/var``. Everything a run writes lives under
it, so a project can be backed up or wiped as one directory, unless ``$SPEEDNET_DATA_ROOT``
puts the bulky outputs (shards, checkpoints, vectors, plots, renders) on object storage.
The catalog records absolute paths and URIs, so restore it at the same place; moving it
is not supported yet.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The model the project ships (models/README.md): trained by its own train-speednet flow.
REFERENCE_CHECKPOINT = REPO_ROOT / "models" / "reference.pt"


def data_home() -> Path:
    """The data folder: $SPEEDNET_HOME, else <repo>/var."""
    return Path(os.environ.get("SPEEDNET_HOME") or REPO_ROOT / "var").resolve()


def data_root(home: Path | None = None) -> str:
    """Where bulky outputs go (shards, staged parts, checkpoints, vectors, renders): $SPEEDNET_DATA_ROOT, else the data folder.

    A URI such as ``s3://bucket/prefix`` puts them on object storage, where every worker of
    a cluster reaches them (``storage.objects``); the catalog and Prefect's state stay in
    the data folder on the flow's machine. One data root serves one catalog: ingest deletes
    the shards its catalog does not list, so two data folders must not share a root.
    """
    root = os.environ.get("SPEEDNET_DATA_ROOT", "").strip()
    if root.startswith("file://"):
        root = root[len("file://"):]
    if not root:
        return str(home or data_home())
    return root.rstrip("/") if "://" in root else str(Path(root).expanduser().resolve())


def samples_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "samples"


def catalog_path(home: Path | None = None) -> Path:
    return (home or data_home()) / "catalog.duckdb"


def shards_dir(home: Path | None = None) -> str:
    """The Parquet shards of ingested clips, under the data root."""
    return under_data_root(home, "shards")


def staging_dir(home: Path | None = None) -> Path:
    """Per-video parts waiting to be packed into shards (kept across a killed run, so no re-decode); always local."""
    return (home or data_home()) / "shards" / "staging"


def staged_scores_dir(home: Path | None = None) -> str:
    """Scored videos' parts waiting for score-library's commit (a killed run's are committed by the next), under the data root."""
    return under_data_root(home, "staging", "scores")


def models_dir(home: Path | None = None) -> str:
    """The model registry's checkpoint files, under the data root."""
    return under_data_root(home, "models")


def under_data_root(home: Path | None, *names: str) -> str:
    """``data_root(home)/name/…`` for a local root and a URI alike."""
    root = data_root(home)
    return "/".join([root, *names]) if "://" in root else str(Path(root).joinpath(*names))
