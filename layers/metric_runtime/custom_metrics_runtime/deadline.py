"""The invocation deadline, enforced inside user code with SIGALRM.

One interval timer is armed per batch, not per pair. When it fires while agreement() runs, the signal
handler raises PairTimeout in the main thread. When it fires between pairs, it only marks the deadline
as passed and the batch loop stops before the next pair. After the first expiry the timer keeps firing
every REPEAT_SECONDS, so user code that swallows the exception with a bare `except` is interrupted again.

Signals only reach the main thread, so outside it (or on a platform without setitimer) no alarm is armed.
There, a pair that runs past the deadline either finishes or is killed by the caller, and only the check
between pairs applies.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

REPEAT_SECONDS = 0.05
MIN_MARGIN_SECONDS = 0.1
MAX_MARGIN_SECONDS = 1.0
MARGIN_FRACTION = 0.1

T = TypeVar("T")


class PairTimeout(BaseException):
    """Raised inside user code at the deadline; a BaseException so that `except Exception` does not catch it."""


def safety_margin(remaining_seconds: float) -> float:
    """Return the time kept back from the invocation timeout to build and send the response.

    10% of the remaining time, at least 0.1 s and at most 1 s.
    """
    return min(MAX_MARGIN_SECONDS, max(MIN_MARGIN_SECONDS, remaining_seconds * MARGIN_FRACTION))


class Deadline:
    """A point on the monotonic clock after which no user code may run.

    `timeout_seconds` is the invocation timeout, used in error messages.
    """

    def __init__(self, at: float, timeout_seconds: float) -> None:
        self.at = at
        self.timeout_seconds = timeout_seconds
        self._fired = False
        self._in_user_code = False

    @property
    def passed(self) -> bool:
        return self._fired or time.monotonic() >= self.at

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call user code, which PairTimeout may interrupt if the alarm is armed."""
        if self.passed:
            raise PairTimeout
        self._in_user_code = True
        try:
            return function(*args, **kwargs)
        finally:
            self._in_user_code = False

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._fired = True
        if self._in_user_code:
            raise PairTimeout

    @contextmanager
    def armed(self) -> Iterator[Deadline]:
        """Arm SIGALRM for the deadline while the block runs, where signals are usable."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            yield self
            return
        previous = signal.signal(signal.SIGALRM, self._on_alarm)
        armed_at = time.monotonic()
        previous_delay, previous_interval = signal.setitimer(
            signal.ITIMER_REAL, max(self.at - armed_at, 0.001), REPEAT_SECONDS
        )
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None means a handler installed outside Python; it cannot be restored, so fall back to default.
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
            if previous_delay > 0:
                # Re-arm a timer that the host process had set, such as a test runner's timeout, minus the time
                # spent here. A timer that was due during the batch fires late.
                left = max(previous_delay - (time.monotonic() - armed_at), 0.001)
                signal.setitimer(signal.ITIMER_REAL, left, previous_interval)
