"""The orchestrator behaviors the fan-out benchmark relies on: packed batches and pipelined cutting."""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from custom_metrics.backends.base import BatchFailedError
from custom_metrics.orchestrator import score_pairs

Pair = dict[str, Any]


class RecordingBackend:
    """Scores every pair 1.0 and records the serialized size and pair count of each request."""

    def __init__(self, *, concurrency: int, max_pairs: int, max_bytes: int, spread: bool | None) -> None:
        self.max_concurrency = concurrency
        self.max_batch_pairs = max_pairs
        self.max_batch_bytes = max_bytes
        if spread is not None:
            self.spread_small_jobs = spread
        self.requests: list[tuple[int, int]] = []
        self.started = threading.Event()
        self._lock = threading.Lock()

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        with self._lock:
            self.requests.append((len(orjson.dumps(payload)), len(payload["pairs"])))
        results = [{"id": pair["id"], "score": 1.0, "per_label": None, "error": None} for pair in payload["pairs"]]
        return {"results": results, "not_run": []}


def make_pairs(count: int, text_length: int = 2000) -> list[Pair]:
    return [
        {"id": f"p{index}", "annotation_1": {"text": "x" * text_length}, "annotation_2": {"result": []}}
        for index in range(count)
    ]


def run(backend: RecordingBackend, pairs: list[Pair]) -> dict[str, Any]:
    return score_pairs(backend, "custom-metric-proj", pairs, per_label=False, request_id="req-1", project="proj")


def test_packing_without_spread_meets_byte_minimum() -> None:
    backend = RecordingBackend(concurrency=16, max_pairs=10_000, max_bytes=100_000, spread=False)
    pairs = make_pairs(300)
    results = run(backend, pairs)
    total = sum(len(orjson.dumps(pair)) for pair in pairs)
    assert len(results) == 300
    assert len(backend.requests) <= math.ceil(1.05 * math.ceil(total / backend.max_batch_bytes))
    assert max(size for size, _ in backend.requests) <= backend.max_batch_bytes


def test_packing_default_still_spreads_small_job() -> None:
    backend = RecordingBackend(concurrency=16, max_pairs=10_000, max_bytes=100_000, spread=None)
    run(backend, make_pairs(32))
    assert sorted(count for _, count in backend.requests) == [2] * 16


def test_packing_keeps_pair_count_cap() -> None:
    backend = RecordingBackend(concurrency=2, max_pairs=5, max_bytes=1_000_000, spread=False)
    run(backend, make_pairs(23, text_length=10))
    assert max(count for _, count in backend.requests) == 5
    assert sum(count for _, count in backend.requests) == 23


class WaitingPairs(list[Pair]):
    """A pair list whose second pass (the measuring one) pauses after `pause_after` pairs until a batch runs."""

    def __init__(self, pairs: list[Pair], started: threading.Event, pause_after: int) -> None:
        super().__init__(pairs)
        self.started = started
        self.pause_after = pause_after
        self.passes = 0
        self.invoked_before_end: bool | None = None

    def __iter__(self) -> Iterator[Pair]:
        self.passes += 1
        measuring = self.passes == 2
        for index, pair in enumerate(super().__iter__()):
            if measuring and index == self.pause_after:
                # Five seconds is only a guard against a hang: the batch normally starts within milliseconds.
                self.invoked_before_end = self.started.wait(timeout=5.0)
            yield pair


def test_pipelining_invokes_before_last_pair_measured() -> None:
    backend = RecordingBackend(concurrency=1, max_pairs=2, max_bytes=1_000_000, spread=False)
    pairs = WaitingPairs(make_pairs(10, text_length=10), backend.started, pause_after=5)
    results = run(backend, pairs)
    assert pairs.invoked_before_end is True
    assert len(results) == 10


def load_fanout() -> ModuleType:
    """Load benchmarks/fanout.py, a script outside the package, as a module."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fanout.py"
    spec = importlib.util.spec_from_file_location("benchmark_fanout", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


def test_simulator_rejects_oversized_request() -> None:
    fanout = load_fanout()
    backend = fanout.SimulatedLambda(0.0, 1, 10, spread_small_jobs=False)
    huge = {"pairs": [{"id": "p0", "annotation_1": {"text": "x" * 7_000_000}, "annotation_2": {}}]}
    with pytest.raises(BatchFailedError, match="over Lambda's payload limit"):
        backend.invoke("custom-metric-proj", huge)
    assert backend.rejected == 1
    assert backend.invocations == 0
