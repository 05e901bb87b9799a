"""The orchestrator with a fake backend: the timeout limit of `check`, and the level of failure logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from custom_metrics import orchestrator
from custom_metrics.backends.base import BatchFailedError


class HangingBackend:
    """A backend that responds like the runtime for a metric hanging on the pairs in `hanging`.

    The first such pair of a batch times out, and every later pair of the batch is listed in not_run.
    """

    max_concurrency = 1
    max_batch_pairs = 100
    max_batch_bytes = 6 * 1024 * 1024

    def __init__(self, hanging: set[str]) -> None:
        self.hanging = hanging
        self.invocations = 0

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.invocations += 1
        results = []
        ids = [pair["id"] for pair in payload["pairs"]]
        for position, pair_id in enumerate(ids):
            if pair_id in self.hanging:
                error = {"type": "TimeoutError", "message": "stopped at the deadline", "line": 3}
                results.append({"id": pair_id, "score": None, "per_label": None, "error": error})
                return {"results": results, "not_run": ids[position + 1 :]}
            results.append({"id": pair_id, "score": 1.0, "per_label": None, "error": None})
        return {"results": results, "not_run": []}


class FailingBackend(HangingBackend):
    def __init__(self, reason: str) -> None:
        super().__init__(set())
        self.reason = reason

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        pair_id = payload["pairs"][0]["id"]
        if pair_id == "p0":
            raise BatchFailedError(self.reason, "the worker failed", culprit_id=pair_id)
        return super().invoke(name, payload)


def make_pairs(count: int) -> list[dict[str, Any]]:
    return [{"id": f"p{index}", "annotation_1": {}, "annotation_2": {}} for index in range(count)]


def score(backend: Any, count: int, max_timeouts: int | None) -> dict[str, Any]:
    return orchestrator.score_pairs(
        backend,
        "fn",
        make_pairs(count),
        per_label=False,
        request_id="req-1",
        project="proj",
        max_timeouts=max_timeouts,
    )


def test_max_timeouts_stops_hanging_metric() -> None:
    backend = HangingBackend({f"p{index}" for index in range(10)})
    results = score(backend, 10, max_timeouts=2)
    assert backend.invocations == 2
    assert [results[f"p{index}"]["error"]["type"] for index in range(2)] == ["TimeoutError", "TimeoutError"]
    assert {results[f"p{index}"]["error"]["type"] for index in range(2, 10)} == {"NotRun"}


def test_max_timeouts_lets_rest_run_after_one() -> None:
    backend = HangingBackend({"p3"})
    results = score(backend, 10, max_timeouts=2)
    assert results["p3"]["error"]["type"] == "TimeoutError"
    assert sum(1 for result in results.values() if result["score"] == 1.0) == 9


def test_without_max_timeouts_every_pair_runs() -> None:
    backend = HangingBackend({f"p{index}" for index in range(5)})
    results = score(backend, 5, max_timeouts=None)
    assert backend.invocations == 5
    assert {result["error"]["type"] for result in results.values()} == {"TimeoutError"}


def test_error_result_has_null_per_label_error() -> None:
    assert orchestrator.error_result("p0", "NotRun", "not run")["per_label_error"] is None


def test_pair_failure_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="custom_metrics.orchestrator")
    results = score(FailingBackend("crash"), 3, max_timeouts=None)
    assert results["p0"]["error"]["type"] == "WorkerCrashed"
    records = [record for record in caplog.records if record.name == "custom_metrics.orchestrator"]
    assert [record.levelno for record in records] == [logging.INFO]
    message = records[0].getMessage()
    for fragment in ("crash", "fn", "req-1", "p0"):
        assert fragment in message


def test_platform_failure_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="custom_metrics.orchestrator")
    score(FailingBackend("function_error"), 3, max_timeouts=None)
    levels = [record.levelno for record in caplog.records if record.name == "custom_metrics.orchestrator"]
    assert levels == [logging.WARNING]
