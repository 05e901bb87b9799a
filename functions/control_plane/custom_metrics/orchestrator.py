"""Score annotation pairs on a backend: cut batches, run them concurrently, recover from failed batches.

Batches are cut by pair count and by serialized size (request and expected response both within
`backend.max_batch_bytes`). On a backend with `spread_small_jobs` true (the default) they are also sized
about ceil(n / max_concurrency), so that a small job still uses every worker. With it false they are
filled to the limits, which makes the fewest invocations. Pairs are measured and cut while the first
batches already run, so the caller's serialization overlaps with the invocations. Recovery rules:

- pairs the runtime lists in `not_run` (it reached its deadline) are sent again in a new batch;
- a BatchFailedError that names its culprit pair gives that pair the error and sends the others again;
- one that names no culprit splits the batch in halves until a single failing pair gets the error;
- ThrottledError is retried with jittered exponential backoff until a deadline, then raises BackendError;
- with `max_timeouts` set, once that many pairs have timed out, the pairs not yet scored get a NotRun
  error instead of being sent again. A run on a metric that hangs on every pair then takes about
  `max_timeouts` timeouts per concurrent batch.

If the caller's thread is interrupted (KeyboardInterrupt), queued batches are dropped and no batch is
sent after that; batches already running end when the backend is closed or at their deadline.

Any other exception from the backend stops the run and propagates. Aggregation is not done here.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from custom_metrics.backends.base import BatchFailedError, ProgressCallback, ThrottledError
from custom_metrics.errors import BackendError, InvalidInputError

logger = logging.getLogger(__name__)

Pair = dict[str, Any]
PairResult = dict[str, Any]

# Room for the payload's other fields around the pairs list.
ENVELOPE_BYTES = 512
# Expected response size per pair: ids, score, and an error message of up to about 1000 characters.
RESPONSE_BYTES_PER_PAIR = 1200
# NOTE: an estimate; a metric returning hundreds of labels per pair can exceed it.
RESPONSE_BYTES_PER_LABEL_BREAKDOWN = 2000
# A pair listed in not_run by this many batches that made no progress at all gets an error.
MAX_STALLED_ATTEMPTS = 3
# Error types of a pair stopped at the deadline: the runtime's, and the orchestrator's after a hard kill.
TIMEOUT_ERROR_TYPES = frozenset({"TimeoutError", "Timeout"})
# Failures caused by the metric on one pair; any other BatchFailedError reason is a platform problem.
PAIR_FAILURE_REASONS = frozenset({"timeout", "crash", "memory", "payload_too_large"})

ERROR_TYPES = {
    "timeout": "Timeout",
    "crash": "WorkerCrashed",
    "memory": "MemoryLimitExceeded",
    "function_error": "FunctionError",
    "payload_too_large": "PayloadTooLarge",
}
ADVICE = {
    "timeout": "make agreement() faster on this pair or deploy the metric with a longer timeout",
    "crash": "the metric ended its process on this pair (os._exit, a signal, a crash in a C extension); fix it",
    "memory": "reduce the metric's memory use on this pair or deploy it with a larger memory size",
    "function_error": "check the function's logs for this request id",
    "payload_too_large": (
        "the pair's request or response is over Lambda's 6 MB invocation limit; shrink its annotations, "
        "or return fewer per-label results"
    ),
}


class ScoringBackend(Protocol):
    """The part of `Backend` the orchestrator uses.

    An optional attribute `spread_small_jobs: bool` (read with getattr, default True) selects whether a
    job that fits in fewer than `max_concurrency` batches is split into `max_concurrency` smaller ones.
    """

    max_concurrency: int
    max_batch_pairs: int
    max_batch_bytes: int

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for throttled invocations: delay = uniform(0, min(max_delay, base_delay * 2**attempt))."""

    base_delay: float = 0.2
    max_delay: float = 10.0
    deadline: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    uniform: Callable[[float, float], float] = random.uniform


def score_pairs(
    backend: ScoringBackend,
    function_name: str,
    pairs: list[Pair],
    *,
    per_label: bool,
    request_id: str,
    project: str,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    max_timeouts: int | None = None,
) -> dict[str, PairResult]:
    """Score `pairs` ({"id", "annotation_1", "annotation_2"}) and return pair id -> per-pair result.

    Every pair gets a result: the runtime's, or one made here with an error. `max_timeouts` (None: no
    limit) stops sending pairs again after that many pairs timed out. Raises InvalidInputError for
    duplicate pair ids and BackendError when throttling outlasts the retry deadline.
    """
    run = _ScoringRun(backend, function_name, per_label, request_id, project, progress, retry or RetryPolicy())
    run.max_timeouts = max_timeouts
    return run.execute(pairs)


def error_result(pair_id: str, error_type: str, message: str) -> PairResult:
    """Return a per-pair result in the runtime's format that carries only an error."""
    error = {"type": error_type, "message": message, "line": None}
    return {"id": pair_id, "score": None, "per_label": None, "error": error, "per_label_error": None}


class _ScoringRun:
    def __init__(
        self,
        backend: ScoringBackend,
        function_name: str,
        per_label: bool,
        request_id: str,
        project: str,
        progress: ProgressCallback | None,
        retry: RetryPolicy,
    ) -> None:
        self.backend = backend
        self.function_name = function_name
        self.per_label = per_label
        self.request_id = request_id
        self.project = project
        self.progress = progress
        self.retry = retry
        self.results: dict[str, PairResult] = {}
        self.sizes: dict[str, int] = {}
        self.stalls: dict[str, int] = {}
        self.total = 0
        self.timeouts = 0
        self.max_timeouts: int | None = None
        self.stopped = False
        self.target_pairs = 1
        self.envelope_bytes = ENVELOPE_BYTES + len(request_id.encode()) + len(project.encode())

    # Planning ------------------------------------------------------------------------------

    def execute(self, pairs: list[Pair]) -> dict[str, PairResult]:
        self.total = len(pairs)
        _check_unique_ids(pairs)
        concurrency = max(1, self.backend.max_concurrency)
        self.target_pairs = max(1, self.backend.max_batch_pairs)
        if getattr(self.backend, "spread_small_jobs", True):
            self.target_pairs = max(1, min(self.target_pairs, math.ceil(len(pairs) / concurrency)))
        self._report_progress()
        self._run_batches(self._cut(self._measure(pairs)), concurrency)
        return self.results

    def _measure(self, pairs: list[Pair]) -> Iterator[Pair]:
        """Record each pair's serialized size; give oversized pairs their error; yield the others."""
        for pair in pairs:
            pair_id = pair["id"]
            size = len(orjson.dumps(pair))
            limit = self.backend.max_batch_bytes - self.envelope_bytes
            if size > limit:
                message = (
                    f"the pair's annotations are {size} bytes serialized, over the limit of {limit} bytes "
                    "for one invocation; shrink the annotations or score this task another way"
                )
                self.results[pair_id] = error_result(pair_id, "PayloadTooLarge", message)
                continue
            self.sizes[pair_id] = size
            yield pair

    def cut_batches(self, pairs: list[Pair]) -> list[list[Pair]]:
        """Split `pairs`, in order, into batches within the pair-count target and the byte limits."""
        return list(self._cut(pairs))

    def _cut(self, pairs: Iterable[Pair]) -> Iterator[list[Pair]]:
        budget = self.backend.max_batch_bytes - self.envelope_bytes
        response_per_pair = RESPONSE_BYTES_PER_PAIR + (RESPONSE_BYTES_PER_LABEL_BREAKDOWN if self.per_label else 0)
        current: list[Pair] = []
        request_bytes = response_bytes = 0
        for pair in pairs:
            pair_bytes = self.sizes[pair["id"]] + 1
            pair_response = response_per_pair + len(pair["id"])
            full = len(current) >= self.target_pairs
            too_big = request_bytes + pair_bytes > budget or response_bytes + pair_response > budget
            if current and (full or too_big):
                yield current
                current, request_bytes, response_bytes = [], 0, 0
            current.append(pair)
            request_bytes += pair_bytes
            response_bytes += pair_response
        if current:
            yield current

    # Running -------------------------------------------------------------------------------

    def _run_batches(self, batches: Iterator[list[Pair]], concurrency: int) -> None:
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="custom-metrics-batch")
        pending: dict[Future[dict[str, Any]], list[Pair]] = {}
        try:
            # Each batch is submitted as soon as it is cut. Batches that finished meanwhile are handled
            # then, so follow-ups and progress do not wait until the last pair is measured.
            for batch in batches:
                pending[executor.submit(self._invoke, batch)] = batch
                self._collect(executor, pending, timeout=0.0)
            while pending:
                self._collect(executor, pending, timeout=None)
        except BaseException:
            # Running batches see this flag before a retry and send nothing more.
            self.stopped = True
            raise
        finally:
            # On an error, batches already running finish in the background; queued ones are dropped.
            executor.shutdown(wait=not pending, cancel_futures=True)

    def _collect(
        self,
        executor: ThreadPoolExecutor,
        pending: dict[Future[dict[str, Any]], list[Pair]],
        timeout: float | None,
    ) -> None:
        """Handle the batches that finish within `timeout` seconds (None: at least one) and submit follow-ups."""
        finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            batch = pending.pop(future)
            for follow_up in self._handle(batch, future):
                pending[executor.submit(self._invoke, follow_up)] = follow_up
        if finished:
            self._report_progress()

    def _invoke(self, batch: list[Pair]) -> dict[str, Any]:
        payload = {"pairs": batch, "per_label": self.per_label, "request_id": self.request_id, "project": self.project}
        started = self.retry.clock()
        attempt = 0
        while True:
            if self.stopped:
                raise BatchFailedError("cancelled", "the scoring run was stopped before this batch was sent")
            try:
                return self.backend.invoke(self.function_name, payload)
            except ThrottledError as exc:
                attempt += 1
                ceiling = min(self.retry.max_delay, self.retry.base_delay * 2**attempt)
                delay = self.retry.uniform(0.0, ceiling)
                waited = self.retry.clock() - started
                if waited + delay > self.retry.deadline:
                    raise BackendError(
                        f"metric function {self.function_name} was still throttled after {waited:.1f} s and "
                        f"{attempt} attempts; retry later or raise the backend's concurrency limit",
                        details={"function": self.function_name, "request_id": self.request_id},
                    ) from exc
                logger.warning(
                    "invocation throttled; retrying",
                    extra={"function": self.function_name, "request_id": self.request_id, "attempt": attempt},
                )
                self.retry.sleep(delay)

    # Recovering ----------------------------------------------------------------------------

    def _handle(self, batch: list[Pair], future: Future[dict[str, Any]]) -> list[list[Pair]]:
        """Record a finished batch's results; return the batches to send next."""
        try:
            response = future.result()
            results, not_run = _read_response(response)
        except BatchFailedError as exc:
            return self._recover(batch, exc)
        ids = {pair["id"] for pair in batch}
        for result in results:
            if result.get("id") in ids and result["id"] not in self.results:
                self.results[result["id"]] = result
                self._count_timeout(result)
        waiting = {pair_id for pair_id in not_run if pair_id in ids and pair_id not in self.results}
        for pair in batch:
            if pair["id"] not in self.results and pair["id"] not in waiting:
                message = f"metric function {self.function_name} returned no result and did not list it in not_run"
                self.results[pair["id"]] = error_result(pair["id"], "FunctionError", message)
                logger.warning("pair missing from response", extra=self._log_ids(pair_id=pair["id"]))
        return self._resubmit([pair for pair in batch if pair["id"] in waiting], progressed=bool(results))

    def _resubmit(self, pairs: list[Pair], *, progressed: bool) -> list[list[Pair]]:
        if self._timeout_limit_reached():
            self._give_up(pairs)
            return []
        again: list[Pair] = []
        for pair in pairs:
            stalls = self.stalls.get(pair["id"], 0) + (0 if progressed else 1)
            self.stalls[pair["id"]] = stalls
            if stalls >= MAX_STALLED_ATTEMPTS:
                message = (
                    f"the pair was not started in {stalls} invocations that scored nothing before their deadline; "
                    "deploy the metric with a longer timeout"
                )
                self.results[pair["id"]] = error_result(pair["id"], "Timeout", message)
                logger.warning("pair never started before the deadline", extra=self._log_ids(pair_id=pair["id"]))
            else:
                again.append(pair)
        return self.cut_batches(again) if again else []

    def _recover(self, batch: list[Pair], failure: BatchFailedError) -> list[list[Pair]]:
        ids = [pair["id"] for pair in batch]
        culprit = failure.culprit_id if failure.culprit_id in ids else None
        self._log_failure(failure, culprit, len(batch))
        if culprit is None and len(batch) > 1:
            middle = len(batch) // 2
            return [batch[:middle], batch[middle:]]
        failed_id = culprit if culprit is not None else ids[0]
        error_type = ERROR_TYPES.get(failure.reason, "FunctionError")
        advice = ADVICE.get(failure.reason, ADVICE["function_error"])
        self.results[failed_id] = error_result(failed_id, error_type, f"{failure.message}; {advice}")
        self._count_timeout(self.results[failed_id])
        rest = [pair for pair in batch if pair["id"] != failed_id]
        if rest and self._timeout_limit_reached():
            self._give_up(rest)
            return []
        return [rest] if rest else []

    def _log_failure(self, failure: BatchFailedError, culprit: str | None, batch_pairs: int) -> None:
        # The metric failing on a pair is recorded in that pair's result, so it is logged at INFO only.
        level = logging.INFO if failure.reason in PAIR_FAILURE_REASONS else logging.WARNING
        logger.log(
            level,
            "batch of %d pairs failed (%s) in function %s, request %s, pair %s",
            batch_pairs,
            failure.reason,
            self.function_name,
            self.request_id,
            culprit or "not known yet",
            extra=self._log_ids(reason=failure.reason, culprit_id=culprit, batch_pairs=batch_pairs),
        )

    def _count_timeout(self, result: PairResult) -> None:
        error = result.get("error")
        if isinstance(error, dict) and error.get("type") in TIMEOUT_ERROR_TYPES:
            self.timeouts += 1

    def _timeout_limit_reached(self) -> bool:
        return self.max_timeouts is not None and self.timeouts >= self.max_timeouts

    def _give_up(self, pairs: list[Pair]) -> None:
        message = (
            f"the pair was not scored because {self.timeouts} pairs timed out and this run stops after "
            f"{self.max_timeouts}; make agreement() faster or give it a longer timeout"
        )
        for pair in pairs:
            self.results[pair["id"]] = error_result(pair["id"], "NotRun", message)
        logger.info("stopped after %d timeouts", self.timeouts, extra=self._log_ids(not_run=len(pairs)))

    def _log_ids(self, **ids: Any) -> dict[str, Any]:
        return {"function": self.function_name, "request_id": self.request_id, **ids}

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(len(self.results), self.total)


def _check_unique_ids(pairs: list[Pair]) -> None:
    seen: set[str] = set()
    for pair in pairs:
        pair_id = pair["id"]
        if pair_id in seen:
            raise InvalidInputError(
                f"duplicate pair id {pair_id!r}: every pair passed to score_pairs needs a unique id"
            )
        seen.add(pair_id)


def _read_response(response: Any) -> tuple[list[PairResult], list[str]]:
    """Return the response's results and not_run, or raise BatchFailedError if it is malformed."""
    if not isinstance(response, dict) or not isinstance(response.get("results"), list):
        raise BatchFailedError("function_error", "the metric function returned a response without a 'results' list")
    results = [result for result in response["results"] if isinstance(result, dict)]
    not_run = response.get("not_run") or []
    if not isinstance(not_run, list):
        raise BatchFailedError("function_error", "the metric function returned a 'not_run' that is not a list")
    return results, [pair_id for pair_id in not_run if isinstance(pair_id, str)]
