"""Where speednet keeps its state: one data folder, laid out the same for every flow.

The folder is ``$SPEEDNET_HOME`` or ``<repo>/var``. Everything a run writes lives under
it, so a project can be backed up or wiped as one directory. The catalog records absolute
paths (shards, checkpoints, plots, renders), so restore it at the same place; moving it
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


def samples_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "samples"


def catalog_path(home: Path | None = None) -> Path:
    return (home or data_home()) / "catalog.duckdb"


def shards_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "shards"


def staging_dir(home: Path | None = None) -> Path:
    """Per-video parts waiting to be packed into shards (kept across a killed run, so no re-decode)."""
    return (home or data_home()) / "shards" / "staging"


def staged_scores_dir(home: Path | None = None) -> Path:
    """Scored videos' parts waiting for score-library's commit (a killed run's are committed by the next)."""
    return (home or data_home()) / "staging" / "scores"
