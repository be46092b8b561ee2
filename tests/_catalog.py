"""Test helpers over the real catalog: read-only queries and registering a model as train-speednet does."""

from __future__ import annotations

from pathlib import Path

import duckdb

from speednet.media import content_hash
from speednet.model import save_checkpoint
from storage import catalog


def rows(home: Path, query: str, params: list | None = None) -> list[tuple]:
    """Result rows of a read-only query on the catalog of data home ``home``."""
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def register(home: Path, model, name: str = "pan") -> str:
    """Save a checkpoint and add its `models` row, as train-speednet's register step does; returns model_id."""
    path = home / "models" / f"{name}.pt"
    save_checkpoint(path, model)
    model_id = content_hash(path)
    with catalog.writer(home / "catalog.duckdb") as con:
        catalog.upsert(con, "models", "model_id", [{
            "model_id": model_id, "checkpoint_path": str(path), "preset": "cpu", "config": "{}",
            "data_snapshot": "test", "metrics": "{}", "created_at": catalog.utc_now()}])
    return model_id


def copy_home(home: Path, copy: Path) -> Path:
    """A copy of a data home whose model registry points at the copied checkpoints (tests may then change it)."""
    import shutil

    shutil.copytree(home, copy)
    with catalog.writer(copy / "catalog.duckdb") as con:
        con.execute("UPDATE models SET checkpoint_path = replace(checkpoint_path, ?, ?)", [str(home), str(copy)])
    return copy
