"""The `transfer_results` table: one evaluation's rows replace the same evaluation's earlier ones, in one transaction."""

from __future__ import annotations

from pathlib import Path

from storage import catalog


def record(catalog_path: str | Path, rows: list[dict]) -> None:
    """Write one transfer evaluation's rows (pretrained and random init × linear probe and fine-tune)."""
    with catalog.writer(catalog_path) as con:
        catalog.upsert(con, "transfer_results", "(run_id, init, method)",
                       [{**row, "created_at": catalog.utc_now()} for row in rows])
