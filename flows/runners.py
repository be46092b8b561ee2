"""The task runner a flow fans out on: a thread pool by default, a Dask cluster when asked.

Set ``SPEEDNET_DASK_ADDRESS`` (e.g. ``tcp://scheduler:8786``) to run mapped tasks on an
existing Dask cluster; its workers need ``distributed.worker.daemon: false`` because each
decode runs in a child process.

Scoring and embedding take one batch at a time on threads (``threads=1``): one process's
torch already uses every core, and two videos at once in it would contend for those cores
and for its one decode lane. Their fan-out is across Dask workers, one model per worker.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner


def task_runner_from_settings(dask_address: str | None = None, threads: int | None = None):
    """A DaskTaskRunner for ``dask_address`` (or $SPEEDNET_DASK_ADDRESS), else a ThreadPoolTaskRunner.

    Threads: $SPEEDNET_TASK_THREADS, else ``threads``, else two per core (at least four).
    """
    address = dask_address or os.environ.get("SPEEDNET_DASK_ADDRESS")
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    workers = int(os.environ.get("SPEEDNET_TASK_THREADS", 0)) or threads or max(4, 2 * (os.cpu_count() or 1))
    return ThreadPoolTaskRunner(max_workers=workers)


def tasks_run_here() -> bool:
    """Whether the running flow's tasks run in its own process (threads), so its decode pool is worth starting.

    On a Dask cluster the workers decode; the flow's own pool would only sit idle.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is None or isinstance(context.task_runner, ThreadPoolTaskRunner)


def finished_batches(jobs: list[PrefectFuture], batches: list[list], log: logging.Logger | logging.LoggerAdapter,
                     doing: str) -> Iterator[tuple[list, list | None]]:
    """(batch, its outcomes) as each mapped batch task ends; outcomes are None when the task failed as a whole.

    A whole task fails for a lost worker or a bug, not a bad file (those come back as
    outcome rows): its videos are logged and left for the next run, which finds them undone.
    """
    batch_of = {job.task_run_id: batch for job, batch in zip(jobs, batches)}
    for job in as_completed(jobs):
        batch, outcomes = batch_of[job.task_run_id], job.result(raise_on_failure=False)
        if isinstance(outcomes, BaseException):
            log.warning("a batch of %d videos was not %s (%s); the next run does them", len(batch), doing, outcomes)
            outcomes = None
        yield batch, outcomes
