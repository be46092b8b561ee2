"""Run a decode job in a recyclable worker process with a time limit.

decord can loop forever holding the GIL, or segfault, on a broken file (HAZARDS.md);
a thread cannot be stopped in either case, a process can. Jobs go to a shared pool of
spawned processes (pebble): a job past its deadline has its worker killed and raises
``DecodeTimeout``; a worker that dies raises ``DecoderCrashed``; workers are replaced
after a number of jobs so decoder memory growth cannot accumulate.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from speednet.errors import DecoderCrashed, DecodeTimeout

_JOBS_PER_WORKER = 256  # recycling costs ~1 s of imports; decord leaks slowly, so not never
_pool = None
_lanes: dict[str, Any] = {}  # name -> a one-worker pool: jobs that must meet the same open decoder
_pool_lock = threading.Lock()
_a_job_finished = False  # in this process: a pool that breaks before any job did points at worker start-up


def default_workers() -> int:
    """Worker processes to use: $SPEEDNET_DECODE_WORKERS, else one per CPU core."""
    return int(os.environ.get("SPEEDNET_DECODE_WORKERS", 0)) or os.cpu_count() or 1


def _new_pool(workers: int):
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # The flag multiprocessing's own check uses (spawn._check_not_importing_main). That
        # check raises in pebble's pool thread, where nobody sees it and the caller waits on
        # its job forever; raise here instead, in the caller's thread.
        raise RuntimeError(
            "a decode worker tried to start decode workers of its own while importing your script's "
            "main module: workers are spawned and re-import that module, so its module-level code "
            "runs in each of them. Put the call that starts the flow under `if __name__ == \"__main__\":`."
        )
    if multiprocessing.current_process().daemon:
        raise RuntimeError(
            "isolated decoding needs to start worker processes, but this is a daemonic process "
            "(a Dask worker?). Start Dask workers with `distributed.worker.daemon: false` "
            "(e.g. DASK_DISTRIBUTED__WORKER__DAEMON=False)."
        )
    from pebble import ProcessPool

    return ProcessPool(max_workers=workers, max_tasks=_JOBS_PER_WORKER, context=multiprocessing.get_context("spawn"))


def _get_pool(lane: str | None = None):
    global _pool
    with _pool_lock:
        if lane is not None:
            if lane not in _lanes or not _lanes[lane].active:
                _lanes[lane] = _new_pool(1)
            return _lanes[lane]
        if _pool is None or not _pool.active:
            _pool = _new_pool(default_workers())
        return _pool


def run_isolated(fn: Callable[..., Any], *args: Any, path: str, timeout_s: float, lane: str | None = None,
                 **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a worker process; its exceptions are re-raised here.

    ``fn`` must be importable by name (a module-level function). ``path`` names the file
    the job reads, for the error raised on a timeout or crash. Jobs naming the same
    ``lane`` share one worker of their own, so chunks of one video read sequentially meet
    the decoder the previous chunk left open (two workers would each re-open and seek).
    """
    from pebble import ProcessExpired

    global _a_job_finished
    pool = _get_pool(lane)
    future = pool.schedule(fn, args=args, kwargs=kwargs, timeout=timeout_s)
    try:
        result = _wait(future, pool)
    except FutureTimeout:
        raise DecodeTimeout(path, f"no result after {timeout_s:.0f} s; the worker was killed") from None
    except ProcessExpired as e:
        raise DecoderCrashed(path, f"the worker process died with exit code {e.exitcode}") from None
    except BrokenProcessPool as e:
        advice = (" No worker has finished a job in this process yet: if you started a flow from a script, "
                  "put that call under `if __name__ == \"__main__\":` (workers re-import the script)."
                  if not _a_job_finished else "")
        raise RuntimeError(f"the decode worker pool broke ({e or type(e).__name__}); any error of the "
                           f"workers' own is on standard error.{advice}") from e
    _a_job_finished = True
    return result


def _wait(future, pool) -> Any:
    """The job's result, under pebble's own deadline.

    Waits in slices: pebble never resolves a job that was still queued when its pool broke,
    so a broken pool must raise here instead of leaving the caller waiting forever.
    """
    while True:
        try:
            return future.result(timeout=1.0)
        except FutureTimeout:
            if future.done():
                return future.result()  # finished meanwhile, or pebble's deadline passed (re-raised)
            if not pool.active:
                raise BrokenProcessPool("the pool stopped with this job still queued") from None


def warm_up() -> None:
    """Start the worker processes now (they take ~1 s to import decord and friends), without waiting."""
    pool = _get_pool()
    for _ in range(default_workers()):
        pool.schedule(os.getpid)


def shutdown() -> None:
    """Stop the worker processes (they are also stopped at interpreter exit)."""
    global _pool
    with _pool_lock:
        for pool in [_pool, *_lanes.values()]:
            if pool is not None:
                pool.stop()
                pool.join()
        _pool = None
        _lanes.clear()


atexit.register(shutdown)
