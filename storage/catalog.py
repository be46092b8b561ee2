"""The DuckDB catalog: connections, schema, and the writes flows make to it.

DuckDB lets one process write a file at a time, and readers in other processes fail while
a writer holds it (HAZARDS.md). So every write happens inside ``writer()``, which holds an
OS file lock beside the database for the whole transaction (concurrent flow runs queue
instead of failing), and connections retry briefly when another process has the file open.
Upserts go through a staging table in one transaction (delete + insert by key), never
through ON CONFLICT with secondary indexes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import warnings
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

SCHEMA_VERSION = 3  # 2: videos.missing_since and the missing_videos view; 3: speediness_maps, transfer_results
_LOCK_RETRY_S = 30.0


def _schema_sql() -> str:
    return resources.files("storage").joinpath("schema.sql").read_text()


def connect(path: str | Path, *, read_only: bool = False, retry_s: float = _LOCK_RETRY_S) -> duckdb.DuckDBPyConnection:
    """Open the catalog, retrying while another process holds it.

    A writable connection creates or updates the schema. A read-only one first brings a
    catalog made by an older speednet up to date, so queries never meet a missing column;
    any other DuckDB file is opened as it is.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no catalog at {path}; run the ingest-library flow first (`speednet ingest LIBRARY`)")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, retry_s)
    if not read_only:
        con.execute(_schema_sql())
        if _version(con) < SCHEMA_VERSION:
            con.execute("DELETE FROM schema_version")
            con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
    elif 0 < _version(con) < SCHEMA_VERSION:  # made by an older speednet: bring it up to date first
        con.close()
        try:
            connect(path, retry_s=retry_s).close()
        except (RuntimeError, duckdb.Error) as e:  # no write access: read it as it is
            warnings.warn(f"{path} was made by an older speednet and could not be updated ({e}); "
                          "queries of newer columns will fail until a flow has written to it", stacklevel=2)
        con = _open(path, read_only, retry_s)
    return con


def _open(path: Path, read_only: bool, retry_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + retry_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "could not set lock" not in str(e).lower():
                raise  # e.g. no permission: DuckDB's own message says so
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: the catalog is locked by another process ({e}); retry when it finishes") from e
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version a catalog was last brought to (0 for a DuckDB file that is no speednet catalog)."""
    try:
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]  # leaves no open result
    except duckdb.CatalogException:
        return 0


@contextlib.contextmanager
def writer(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside one transaction, exclusive across processes; commits on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        con = connect(path)
        try:
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()


def upsert(con: duckdb.DuckDBPyConnection, table: str, key: str, rows: list[dict]) -> None:
    """Replace rows of ``table`` by ``key`` with ``rows`` (missing columns become NULL)."""
    if not rows:
        return
    insert_rows(con, table, rows, replace_by=key)


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict], replace_by: str | None = None) -> None:
    """Insert ``rows`` through one staged Arrow table (missing columns NULL), first deleting by ``replace_by`` if given."""
    if not rows:
        return
    columns = [name for name, *_ in con.execute(f"DESCRIBE {table}").fetchall()]
    staged = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    con.register("staged_rows", staged)
    try:
        if replace_by:
            con.execute(f"DELETE FROM {table} WHERE {replace_by} IN (SELECT {replace_by} FROM staged_rows)")
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM staged_rows")
    finally:
        con.unregister("staged_rows")


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def canonical_json(params: dict) -> str:
    """Stable JSON of a parameter dict, the input of ``params_hash``."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def known_files(path: str | Path) -> dict[str, tuple[int, int, str]]:
    """path -> (size_bytes, mtime_ns, video_id) for files already hashed, to skip re-hashing them."""
    if not Path(path).exists():
        return {}
    con = connect(path, read_only=True)
    try:
        rows = con.execute("SELECT path, size_bytes, mtime_ns, video_id FROM videos WHERE mtime_ns IS NOT NULL "
                           "ORDER BY missing_since IS NULL").fetchall()  # a path's present video last, so it wins
    finally:
        con.close()
    return {p: (size, mtime, vid) for p, size, mtime, vid in rows}


def video_states(path: str | Path) -> dict[str, tuple[str, str | None, str | None]]:
    """video_id -> (status, error_kind, params_hash) for every catalogued video."""
    if not Path(path).exists():
        return {}
    con = connect(path, read_only=True)
    try:
        rows = con.execute("SELECT video_id, status, error_kind, params_hash FROM videos").fetchall()
    finally:
        con.close()
    return {vid: (status, kind, ph) for vid, status, kind, ph in rows}
