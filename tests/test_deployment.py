"""The flows as users run them: deployments on the embedded server, and fan-out on Dask."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import duckdb
import numpy as np
import pytest

from _catalog import copy_home, register, rows
from _pan import write_pan_video
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


@pytest.fixture(scope="module")
def dask_cluster(stack):
    """A local cluster of two one-thread worker processes reporting to the module's API server."""
    import dask
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", stack.api_url)  # inherited by the Dask worker processes
        with temporary_settings({PREFECT_API_URL: stack.api_url}), dask.config.set({"distributed.worker.daemon": False}):
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                yield cluster


def _on(cluster, flow):
    from prefect_dask import DaskTaskRunner

    return flow.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))


LEVELS = 4


def test_score_and_embed_fan_out_on_dask_with_the_rows_of_a_threaded_run(dask_cluster, library, home, pan_model, tmp_path):
    from flows.embed import embed_library
    from flows.ingest import ingest_library
    from flows.score import score_library

    ingest_library(library=str(library), **SMALL)
    model_id = register(home, pan_model)
    threaded = copy_home(home, tmp_path / "threaded")

    scored = _on(dask_cluster, score_library)(levels=LEVELS, plots=True)
    embedded = _on(dask_cluster, embed_library)()
    assert (scored["scored"], scored["failed"], scored["unfinished"]) == (3, 0, 0)
    assert (embedded["embedded"], embedded["failed"], embedded["unfinished"]) == (3, 0, 0)
    assert score_library(data_home=str(threaded), levels=LEVELS)["scored"] == 3
    assert embed_library(data_home=str(threaded))["embedded"] == 3

    frames = "SELECT video_id, speed, frame, p_natural FROM frame_scores ORDER BY video_id, speed, frame"
    on_dask, on_threads = rows(home, frames), rows(threaded, frames)
    assert len(on_dask) == len(on_threads) > 0
    assert [r[:3] for r in on_dask] == [r[:3] for r in on_threads]
    np.testing.assert_allclose([r[3] for r in on_dask], [r[3] for r in on_threads], atol=1e-5)
    segments = "SELECT video_id, start_s, end_s, kind FROM segments ORDER BY video_id, start_s"
    assert rows(home, segments) == rows(threaded, segments)
    vectors = "SELECT vector_id, video_id, start_frame, start_s, end_s FROM embeddings ORDER BY vector_id"
    assert rows(home, vectors) == rows(threaded, vectors)
    assert rows(home, "SELECT model_id, count(*) FROM video_speediness GROUP BY 1") == [(model_id, 3)]
    assert len(list((home / "plots" / "speediness").glob("[!.]*.png"))) == 3  # written by the workers
    assert not list((home / "staging" / "scores").glob("*.parquet")), "every staged part is committed and removed"


def test_a_dask_worker_killed_mid_run_leaves_whole_videos_and_a_rerun_completes(dask_cluster, home, pan_model, tmp_path):
    from distributed import Client

    from flows.ingest import ingest_library
    from flows.score import score_library

    library = tmp_path / "pans"
    for seed in range(6):
        write_pan_video(library / f"pan{seed}.mp4", speeds=[1.0, 2.0], frames_each=90, seed=seed)
    ingest_library(library=str(library), **SMALL)
    register(home, pan_model)

    killed = {}

    def kill_a_busy_worker() -> None:
        with Client(dask_cluster.scheduler_address, timeout=30) as client:
            pids = client.run(os.getpid)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [address for address, keys in client.processing().items() if keys]
                if busy and list((home / "staging" / "scores").glob("*.parquet")):  # mid-run: some videos done
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed["worker"] = busy[0]
                    return
                time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    first = _on(dask_cluster, score_library)(levels=LEVELS)
    killer.join()
    assert killed, "no worker was busy while parts were staged; the test proves nothing"

    def consistent() -> set[str]:
        """Videos with a summary row; each has every frame at every speed, and no other video has any row."""
        frames = dict(rows(home, "SELECT video_id, frame_count FROM ingested_videos"))
        done = {vid for (vid,) in rows(home, "SELECT video_id FROM video_speediness WHERE status = 'scored'")}
        counted = dict(rows(home, "SELECT video_id, count(*) FROM frame_scores GROUP BY 1"))
        assert counted == {vid: (LEVELS + 1) * frames[vid] for vid in done}
        return done

    assert len(consistent()) == first["scored"] and first["failed"] == 0
    assert first["scored"] + first["unfinished"] == 6
    second = _on(dask_cluster, score_library)(levels=LEVELS)
    assert second["scored"] == first["unfinished"]
    assert len(consistent()) == 6
