"""score_pairs against an in-memory fake backend: batching, recovery, throttling, progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from custom_metrics.backends.base import BatchFailedError, ThrottledError
from custom_metrics.errors import BackendError, FunctionNotFoundError, InvalidInputError
from custom_metrics.orchestrator import RetryPolicy, score_pairs

Pair = dict[str, Any]
Behaviour = Callable[[list[Pair]], dict[str, Any]]


def score_all(pairs: list[Pair]) -> dict[str, Any]:
    return {"results": [scored(pair["id"]) for pair in pairs], "not_run": []}


def scored(pair_id: str) -> dict[str, Any]:
    return {"id": pair_id, "score": 1.0, "per_label": None, "error": None}


class FakeBackend:
    """Records each batch's pair ids and returns what `behaviour` returns for its pairs."""

    def __init__(
        self,
        behaviour: Behaviour = score_all,
        *,
        concurrency: int = 2,
        max_pairs: int = 100,
        max_bytes: int = 1_000_000,
    ) -> None:
        self.behaviour = behaviour
        self.max_concurrency = concurrency
        self.max_batch_pairs = max_pairs
        self.max_batch_bytes = max_bytes
        self.batches: list[list[str]] = []
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.batches.append([pair["id"] for pair in payload["pairs"]])
            self.payloads.append(payload)
        return self.behaviour(payload["pairs"])


def make_pairs(count: int, *, text: str = "") -> list[Pair]:
    return [
        {"id": f"p{index}", "annotation_1": {"text": text}, "annotation_2": {"text": text}} for index in range(count)
    ]


def run(backend: FakeBackend, pairs: list[Pair], **options: Any) -> dict[str, dict[str, Any]]:
    return score_pairs(
        backend, "custom-metric-proj", pairs, per_label=False, request_id="req-1", project="proj", **options
    )


def test_orchestrator_spreads_small_job_over_workers() -> None:
    backend = FakeBackend(concurrency=4)
    results = run(backend, make_pairs(10))
    assert sorted(len(batch) for batch in backend.batches) == [1, 3, 3, 3]
    assert all(results[f"p{index}"]["score"] == 1.0 for index in range(10))


def test_orchestrator_caps_batch_pairs() -> None:
    backend = FakeBackend(concurrency=2, max_pairs=7)
    run(backend, make_pairs(30))
    assert max(len(batch) for batch in backend.batches) == 7
    assert sum(len(batch) for batch in backend.batches) == 30


def test_orchestrator_cuts_by_bytes() -> None:
    backend = FakeBackend(concurrency=1, max_pairs=1000, max_bytes=12_000)
    run(backend, make_pairs(20, text="x" * 1000))
    assert len(backend.batches) > 1
    sizes = [len(batch) for batch in backend.batches]
    assert max(sizes) <= 5


def test_orchestrator_response_estimate_limits_batch() -> None:
    backend = FakeBackend(concurrency=1, max_pairs=1000, max_bytes=10_000)
    run(backend, make_pairs(50))
    assert max(len(batch) for batch in backend.batches) < 10


def test_orchestrator_oversize_pair_gets_error() -> None:
    backend = FakeBackend(concurrency=1, max_bytes=5_000)
    pairs = make_pairs(3)
    pairs[1]["annotation_1"] = {"text": "y" * 10_000}
    results = run(backend, pairs)
    error = results["p1"]["error"]
    assert error["type"] == "PayloadTooLarge"
    assert "bytes serialized, over the limit of" in error["message"]
    assert results["p0"]["score"] == 1.0
    assert results["p2"]["score"] == 1.0
    assert all("p1" not in batch for batch in backend.batches)


def test_orchestrator_resubmits_not_run() -> None:
    def half(pairs: list[Pair]) -> dict[str, Any]:
        middle = max(1, len(pairs) // 2)
        return {
            "results": [scored(pair["id"]) for pair in pairs[:middle]],
            "not_run": [p["id"] for p in pairs[middle:]],
        }

    backend = FakeBackend(half, concurrency=1)
    results = run(backend, make_pairs(8))
    assert [len(batch) for batch in backend.batches] == [8, 4, 2, 1]
    assert all(results[f"p{index}"]["score"] == 1.0 for index in range(8))


def test_orchestrator_stalled_not_run_ends() -> None:
    backend = FakeBackend(lambda pairs: {"results": [], "not_run": [p["id"] for p in pairs]}, concurrency=1)
    results = run(backend, make_pairs(2))
    assert len(backend.batches) == 3
    assert results["p0"]["error"]["type"] == "Timeout"
    assert results["p1"]["error"]["type"] == "Timeout"


def test_orchestrator_bisects_without_culprit() -> None:
    def crash_on_p5(pairs: list[Pair]) -> dict[str, Any]:
        if any(pair["id"] == "p5" for pair in pairs):
            raise BatchFailedError("crash", "the function's process crashed")
        return score_all(pairs)

    backend = FakeBackend(crash_on_p5, concurrency=1)
    results = run(backend, make_pairs(8))
    assert results["p5"]["error"]["type"] == "WorkerCrashed"
    assert results["p5"]["error"]["message"].startswith("the function's process crashed; ")
    assert all(results[f"p{index}"]["score"] == 1.0 for index in range(8) if index != 5)
    assert ["p5"] in backend.batches
    assert len(backend.batches) <= 2 * 3 + 1


@pytest.mark.parametrize(
    ("reason", "error_type", "advice"),
    [
        ("timeout", "Timeout", "longer timeout"),
        ("memory", "MemoryLimitExceeded", "larger memory size"),
        ("crash", "WorkerCrashed", "fix it"),
        ("function_error", "FunctionError", "logs"),
    ],
)
def test_orchestrator_culprit_gets_error(reason: str, error_type: str, advice: str) -> None:
    def fail_on_p2(pairs: list[Pair]) -> dict[str, Any]:
        if any(pair["id"] == "p2" for pair in pairs):
            raise BatchFailedError(reason, "batch failed (limit 7)", culprit_id="p2")
        return score_all(pairs)

    backend = FakeBackend(fail_on_p2, concurrency=1)
    results = run(backend, make_pairs(5))
    error = results["p2"]["error"]
    assert error["type"] == error_type
    assert "batch failed (limit 7)" in error["message"]
    assert advice in error["message"]
    assert backend.batches == [["p0", "p1", "p2", "p3", "p4"], ["p0", "p1", "p3", "p4"]]
    assert all(results[pair_id]["score"] == 1.0 for pair_id in ("p0", "p1", "p3", "p4"))


def test_orchestrator_retries_throttling() -> None:
    calls = {"count": 0}
    delays: list[float] = []

    def throttled_twice(pairs: list[Pair]) -> dict[str, Any]:
        calls["count"] += 1
        if calls["count"] <= 2:
            raise ThrottledError("slow down")
        return score_all(pairs)

    backend = FakeBackend(throttled_twice, concurrency=1)
    policy = RetryPolicy(base_delay=0.5, sleep=delays.append)
    results = run(backend, make_pairs(3), retry=policy)
    assert results["p0"]["score"] == 1.0
    assert len(delays) == 2
    assert 0.0 <= delays[0] <= 1.0
    assert 0.0 <= delays[1] <= 2.0


def test_orchestrator_throttling_deadline() -> None:
    now = {"time": 0.0}

    def sleep(seconds: float) -> None:
        now["time"] += seconds

    def always_throttled(pairs: list[Pair]) -> dict[str, Any]:
        raise ThrottledError("slow down")

    policy = RetryPolicy(
        base_delay=1.0,
        max_delay=4.0,
        deadline=30.0,
        sleep=sleep,
        clock=lambda: now["time"],
        uniform=lambda _, high: high,
    )
    with pytest.raises(BackendError, match="custom-metric-proj was still throttled"):
        run(FakeBackend(always_throttled, concurrency=1), make_pairs(1), retry=policy)
    assert now["time"] <= 30.0


def test_orchestrator_reports_progress() -> None:
    updates: list[tuple[int, int]] = []
    backend = FakeBackend(concurrency=2)
    run(backend, make_pairs(10), progress=lambda done, total: updates.append((done, total)))
    assert updates[0] == (0, 10)
    assert updates[-1] == (10, 10)
    assert [done for done, _ in updates] == sorted(done for done, _ in updates)


def test_orchestrator_rejects_duplicate_ids() -> None:
    pairs = make_pairs(2)
    pairs[1]["id"] = "p0"
    with pytest.raises(InvalidInputError, match="duplicate pair id 'p0'"):
        run(FakeBackend(), pairs)


def test_orchestrator_missing_result_is_error() -> None:
    backend = FakeBackend(lambda pairs: {"results": [scored(pairs[0]["id"])], "not_run": []}, concurrency=1)
    results = run(backend, make_pairs(2))
    assert results["p0"]["score"] == 1.0
    assert results["p1"]["error"]["type"] == "FunctionError"


def test_orchestrator_malformed_response_bisected() -> None:
    backend = FakeBackend(lambda pairs: {"unexpected": True}, concurrency=1)
    results = run(backend, make_pairs(2))
    assert results["p0"]["error"]["type"] == "FunctionError"
    assert results["p1"]["error"]["type"] == "FunctionError"
    assert backend.batches == [["p0", "p1"], ["p0"], ["p1"]]


def test_orchestrator_propagates_other_errors() -> None:
    def missing(pairs: list[Pair]) -> dict[str, Any]:
        raise FunctionNotFoundError("metric function custom-metric-proj not found")

    with pytest.raises(FunctionNotFoundError):
        run(FakeBackend(missing), make_pairs(4))


def test_orchestrator_payload_fields() -> None:
    backend = FakeBackend(concurrency=1)
    score_pairs(backend, "fn", make_pairs(1), per_label=True, request_id="req-9", project="proj-9")
    payload = backend.payloads[0]
    assert payload["per_label"] is True
    assert payload["request_id"] == "req-9"
    assert payload["project"] == "proj-9"


def test_orchestrator_empty_input() -> None:
    backend = FakeBackend()
    assert run(backend, []) == {}
    assert backend.batches == []
