"""Progress of a long step, shown where the user is looking.

In a Prefect run it is a progress artifact (the UI's run page shows a bar); on an
interactive terminal it is also a rich progress bar.
"""

from __future__ import annotations

import logging
import sys

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)


class StepProgress:
    """Count finished units of work towards ``total``; use as a context manager."""

    def __init__(self, description: str, total: int):
        self.description, self.total, self.done = description, max(total, 0), 0
        self._artifact_id = None
        self._last_reported = -1.0
        self._bar: Progress | None = None

    def __enter__(self) -> "StepProgress":
        if FlowRunContext.get() or TaskRunContext.get():
            try:
                self._artifact_id = create_progress_artifact(progress=0.0, description=self.description)
            except Exception as e:  # the run must not fail because the UI could not be told
                log.warning("could not create a progress artifact for %r: %s", self.description, e)
        if sys.stderr.isatty() and self.total:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def update(self, done: int, total: int) -> None:
        """Set the count and the total (for work whose size is known only once it starts)."""
        self.total = max(total, 0)
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)
        self.advance(done - self.done)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        if self._artifact_id and (percent - self._last_reported >= 5 or self.done == self.total):
            try:
                update_progress_artifact(self._artifact_id, progress=percent)
                self._last_reported = percent
            except Exception as e:
                log.warning("could not update progress of %r: %s", self.description, e)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
