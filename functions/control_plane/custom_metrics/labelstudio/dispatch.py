"""Where webhook work runs after the receiver has sent its response.

Label Studio 1.23.2 delivers a webhook inside the annotator's own request, waits at most 1 s for
the response and never retries, so the receiver only verifies and queues the event, and the
rescoring runs afterwards:
- in the local server, on one background thread fed by a bounded queue (`BackgroundDispatcher`);
- on AWS Lambda, inline before the response (`InlineDispatcher`), because a Lambda execution
  environment may be frozen as soon as the handler returns.

NOTE: on Lambda the response therefore waits for the rescoring. Label Studio gives up after 1 s
and logs a timeout, but API Gateway and Lambda finish the work; `reconcile` repairs what an
invocation that fails leaves behind.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

MAX_QUEUED_JOBS = 10_000
Job = Callable[[], None]


class Dispatcher(Protocol):
    def submit(self, job: Job, *, name: str) -> bool:
        """Run or queue `job`; return False when it was dropped."""
        ...


class InlineDispatcher:
    """Runs each job at once, in the caller's thread."""

    def submit(self, job: Job, *, name: str) -> bool:
        _run(job, name)
        return True


class BackgroundDispatcher:
    """Runs jobs one at a time, in submission order, on a daemon thread started on first use.

    A single thread applies one process's events in the order they arrived, so an earlier event
    cannot overwrite the score written for a later one.
    """

    def __init__(self, *, max_queued: int = MAX_QUEUED_JOBS) -> None:
        self._queue: queue.Queue[tuple[Job, str]] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job, *, name: str) -> bool:
        self._start()
        try:
            self._queue.put_nowait((job, name))
        except queue.Full:
            logger.error("webhook job dropped because the queue is full; run reconcile", extra={"job": name})
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued job has finished; return False if `timeout` seconds pass first."""
        finished = threading.Event()

        def wait() -> None:
            self._queue.join()
            finished.set()

        threading.Thread(target=wait, daemon=True).start()
        return finished.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="label-studio-sync", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            job, name = self._queue.get()
            try:
                _run(job, name)
            finally:
                self._queue.task_done()


def _run(job: Job, name: str) -> None:
    try:
        job()
    except Exception:
        # A failed job must not stop the worker. The traceback names the cause, and `reconcile` repairs the score.
        logger.exception("webhook job failed", extra={"job": name})


_background = BackgroundDispatcher()


def default_dispatcher() -> Dispatcher:
    """Return the inline dispatcher inside AWS Lambda, else this process's background dispatcher."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return InlineDispatcher()
    return _background


def background_dispatcher() -> BackgroundDispatcher:
    return _background
