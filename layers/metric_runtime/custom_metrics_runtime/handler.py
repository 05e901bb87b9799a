"""Entry point of every metric function: score a batch of annotation pairs with the user's agreement().

Handler string on Lambda: `custom_metrics_runtime.handler.lambda_handler`. The local worker calls
`handle_batch` with its own code directory and context. Payload and response formats are documented in
`custom_metrics.backends.base`. This module and the modules it imports use the standard library only,
because they ship in a Lambda layer.

Per pair, with per_label false, agreement(annotation_1, annotation_2, False) must return a score: a
finite number in [0, 1] (see `validation` for what counts). With per_label true it is called twice, once
with False for the score and once with True for the breakdown. The breakdown is a dict of label name to
score; int label keys are converted to str, and bool keys are rejected. A plain number there means "no
per-label breakdown" and leaves per_label None without an error. An exception or an invalid value in the
score call becomes that pair's `error`, and the other pairs still run. A pair with an error has score and
per_label None. An exception or an invalid value in the per_label=True call only sets the pair's
`per_label_error` (same shape as `error`) and leaves per_label None. The score is kept, so asking for a
breakdown never changes the project agreement.

Each error's `line` is the metric.py line that raised. For an invalid return value it is None, because
finding the line of the `return` would need a trace function on every call of agreement().

The batch stops shortly before the invocation deadline (see `deadline`): the pair running then gets a
TimeoutError and the pairs not started are returned in `not_run` for the caller to send again.

One JSON line per batch goes to stdout with ids and counts, never annotations.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .deadline import Deadline, PairTimeout, safety_margin
from .loader import (
    LoadedMetric,
    PerLabelPassing,
    default_code_dir,
    describe_exception,
    describe_timeout,
    load_metric,
)
from .protocol import LOADING_INDEX
from .validation import InvalidReturnValue, to_per_label, to_score

# Used when the caller passes no context with get_remaining_time_in_millis(): Lambda's maximum timeout.
DEFAULT_REMAINING_SECONDS = 900.0

PairStartCallback = Callable[[int], None]


class _StdoutHandler(logging.Handler):
    """Write records to whatever sys.stdout is at emit time; the local worker replaces it after import."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never fail the batch
            self.handleError(record)


logger = logging.getLogger("custom_metrics_runtime")
logger.setLevel(logging.INFO)
logger.propagate = False  # Lambda's root handler would prefix the JSON with its own text fields
if not logger.handlers:
    logger.addHandler(_StdoutHandler())


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Score one batch on AWS Lambda, where the package is unpacked in LAMBDA_TASK_ROOT."""
    return handle_batch(event, context, code_dir=default_code_dir())


def handle_batch(
    event: dict[str, Any],
    context: Any,
    *,
    code_dir: Path,
    on_pair_start: PairStartCallback | None = None,
) -> dict[str, Any]:
    """Score the pairs of `event` with the metric in `code_dir` and return the response dict.

    `on_pair_start(index)` is called before each pair, and with LOADING_INDEX before metric.py is loaded,
    so a supervisor can tell what was running if the process dies. Raises ValueError if the event does not
    have the documented shape.
    """
    started = time.monotonic()
    pairs, per_label = _read_event(event)
    deadline = _deadline_from(context, started)
    memory_limit_mb = _memory_limit_mb(context)
    with deadline.armed():
        if on_pair_start is not None:
            on_pair_start(LOADING_INDEX)
        metric = load_metric(code_dir, deadline, memory_limit_mb)
        not_run: list[str] = []
        if metric.error is not None:
            results = [_result(pair["id"], error=metric.error) for pair in pairs]
        else:
            scorer = _PairScorer(metric, per_label, deadline, memory_limit_mb)
            results, not_run = _score_batch(scorer, pairs, deadline, on_pair_start)
    _log_batch(event, context, results, not_run, started)
    return {"results": results, "not_run": not_run}


def _read_event(event: Any) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(event, dict) or not isinstance(event.get("pairs"), list):
        raise ValueError("invalid invocation payload: expected a JSON object with a 'pairs' list")
    pairs: list[dict[str, Any]] = event["pairs"]
    for position, pair in enumerate(pairs):
        if not isinstance(pair, dict) or not isinstance(pair.get("id"), str):
            raise ValueError(f"invalid invocation payload: pair {position} is not an object with a str 'id'")
        if "annotation_1" not in pair or "annotation_2" not in pair:
            raise ValueError(f"invalid invocation payload: pair {pair['id']!r} lacks annotation_1 or annotation_2")
    return pairs, bool(event.get("per_label", False))


def _deadline_from(context: Any, started: float) -> Deadline:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = remaining_ms() / 1000.0 if callable(remaining_ms) else DEFAULT_REMAINING_SECONDS
    timeout = getattr(context, "timeout_seconds", None)
    if not isinstance(timeout, int | float):
        # Lambda's context has no timeout field; the time left at the start of the handler is just under it.
        timeout = math.ceil(remaining)
    return Deadline(started + remaining - safety_margin(remaining), timeout)


def _memory_limit_mb(context: Any) -> int | None:
    # Lambda's context has memory_limit_in_mb as a str; the local worker's context has an int.
    value: Any = getattr(context, "memory_limit_in_mb", None)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _score_batch(
    scorer: _PairScorer,
    pairs: list[dict[str, Any]],
    deadline: Deadline,
    on_pair_start: PairStartCallback | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    results: list[dict[str, Any]] = []
    for index, pair in enumerate(pairs):
        if deadline.passed:
            return results, [pending["id"] for pending in pairs[index:]]
        if on_pair_start is not None:
            on_pair_start(index)
        results.append(scorer.score(pair))
    return results, []


class _PairScorer:
    """Calls agreement() for one pair and turns its return value or exception into the pair's result."""

    def __init__(self, metric: LoadedMetric, per_label: bool, deadline: Deadline, memory_limit_mb: int | None) -> None:
        self.metric = metric
        self.deadline = deadline
        self.memory_limit_mb = memory_limit_mb
        self.wants_breakdown = per_label and metric.passing is not PerLabelPassing.NOT_ACCEPTED

    def score(self, pair: dict[str, Any]) -> dict[str, Any]:
        pair_id: str = pair["id"]
        annotation_1, annotation_2 = pair["annotation_1"], pair["annotation_2"]
        try:
            score = to_score(self.metric.call(self.deadline, annotation_1, annotation_2, False))
        except BaseException as exc:  # noqa: BLE001 - any failure of user code, SystemExit included, stays per pair
            return _result(pair_id, error=self._describe(exc))
        breakdown: dict[str, float] | None = None
        per_label_error: dict[str, Any] | None = None
        if self.wants_breakdown:
            try:
                breakdown = to_per_label(self.metric.call(self.deadline, annotation_1, annotation_2, True))
            except BaseException as exc:  # noqa: BLE001 - the breakdown's failure must not discard the score
                per_label_error = self._describe(exc)
        result: dict[str, Any] = {"id": pair_id, "score": score, "per_label": breakdown, "error": None}
        result["per_label_error"] = per_label_error
        return result

    def _describe(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, PairTimeout):
            return describe_timeout(exc, self.metric.path, self.deadline.timeout_seconds, "agreement()")
        if isinstance(exc, InvalidReturnValue):
            return {"type": "InvalidReturnValue", "message": str(exc), "line": None}
        return describe_exception(exc, self.metric.path, self.memory_limit_mb)


def _result(pair_id: str, *, error: dict[str, Any]) -> dict[str, Any]:
    return {"id": pair_id, "score": None, "per_label": None, "error": error, "per_label_error": None}


def _log_batch(
    event: dict[str, Any], context: Any, results: list[dict[str, Any]], not_run: list[str], started: float
) -> None:
    record = {
        "level": "INFO",
        "message": "batch scored",
        "request_id": event.get("request_id"),
        "aws_request_id": getattr(context, "aws_request_id", None),
        "project": event.get("project"),
        "pairs": len(event["pairs"]),
        "errors": sum(1 for result in results if result["error"] is not None),
        "not_run": len(not_run),
        "duration_ms": round((time.monotonic() - started) * 1000.0, 1),
    }
    logger.info(json.dumps(record, default=str))
