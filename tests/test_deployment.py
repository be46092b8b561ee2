"""The flows as users run them: deployments on the embedded server, and fan-out on Dask."""

from __future__ import annotations

import socket

import duckdb
import pytest

from conftest import EXPECTED_KIND
from flows.stack import Stack, _alive

pytestmark = pytest.mark.slow
SMALL = dict(short_side_px=64, clip_frames=16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _statuses(catalog) -> dict[str, int]:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        return dict(con.execute("SELECT status, count(*) FROM videos GROUP BY status").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One embedded server + process worker for this module; stopped (and checked stopped) at the end."""
    stack = Stack(home=tmp_path_factory.mktemp("stack") / "home", port=_free_port())
    try:
        stack.start()
        yield stack
        pids = [stack._pid("server"), stack._pid("worker")]
    finally:
        stack.stop()
    assert not any(_alive(pid) for pid in pids), "one SIGTERM per process group must end server and worker"
    assert not stack.healthy()


def test_ingest_deployment_runs_on_the_embedded_server(stack, library):
    assert stack.status()["server"] and stack.status()["worker"]
    assert "ingest-library/default" in stack.deploy()
    run = stack.run_deployment("ingest-library/default", {"library": str(library), **SMALL}, timeout_s=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Completed" in run.stdout
    assert _statuses(stack.home / "catalog.duckdb") == {"ingested": 3, "failed": len(EXPECTED_KIND)}


def test_ingest_fans_out_on_a_local_two_worker_dask_cluster(stack, library, home, monkeypatch):
    """Dask workers report task runs to a real API server (an ephemeral one lives only in this process)."""
    import dask
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.ingest import ingest_library

    # each decode runs in a child process, which daemonic Dask workers may not start
    monkeypatch.setenv("PREFECT_API_URL", stack.api_url)  # inherited by the Dask worker processes
    with temporary_settings({PREFECT_API_URL: stack.api_url}), dask.config.set({"distributed.worker.daemon": False}):
        with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
            on_dask = ingest_library.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
            summary = on_dask(library=str(library), **SMALL)
    assert (summary["ingested"], summary["failed"], summary["clips"]) == (3, len(EXPECTED_KIND), 10)
    assert _statuses(home / "catalog.duckdb") == {"ingested": 3, "failed": len(EXPECTED_KIND)}
