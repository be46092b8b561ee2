"""The task runner a flow fans out on: a thread pool by default, a Dask cluster when asked.

Set ``SPEEDNET_DASK_ADDRESS`` (e.g. ``tcp://scheduler:8786``) to run mapped tasks on an
existing Dask cluster; its workers need ``distributed.worker.daemon: false`` because each
decode runs in a child process.
"""

from __future__ import annotations

import os

from prefect.task_runners import ThreadPoolTaskRunner


def task_runner_from_settings(dask_address: str | None = None):
    """A DaskTaskRunner for ``dask_address`` (or $SPEEDNET_DASK_ADDRESS), else a ThreadPoolTaskRunner."""
    address = dask_address or os.environ.get("SPEEDNET_DASK_ADDRESS")
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    workers = int(os.environ.get("SPEEDNET_TASK_THREADS", 0)) or max(4, 2 * (os.cpu_count() or 1))
    return ThreadPoolTaskRunner(max_workers=workers)
