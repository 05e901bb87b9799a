"""score_pairs driving a real WorkerPool: hangs, crashes and kills end as per-pair errors."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.orchestrator import score_pairs
from custom_metrics.sandbox import WorkerPool


class PoolBackend:
    """The scoring part of a local backend: one metric directory run through a WorkerPool."""

    def __init__(self, pool: WorkerPool, code_dir: Path, *, timeout: float, memory_mb: int = 512) -> None:
        self.pool = pool
        self.code_dir = code_dir
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_concurrency = pool.size
        self.max_batch_pairs = 500
        self.max_batch_bytes = 6 * 1024 * 1024

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.pool.invoke(self.code_dir, payload, self.timeout, self.memory_mb)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2) as worker_pool:
        yield worker_pool


def write_metric(folder: Path, source: str) -> Path:
    (folder / "metric.py").write_text(textwrap.dedent(source), "utf-8")
    return folder


def make_pairs(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p{index}", "annotation_1": {"index": index}, "annotation_2": {"index": index}}
        for index in range(count)
    ]


def run(backend: PoolBackend, pairs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return score_pairs(backend, "local-metric", pairs, per_label=False, request_id="req-1", project="proj")


def test_orchestrator_local_hang_times_out_one_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    def agreement(annotation_1, annotation_2, per_label=False):
        if annotation_1["index"] == 17:
            while True:
                pass
        return 1.0
    """
    timeout = 2.0
    backend = PoolBackend(pool, write_metric(tmp_path, source), timeout=timeout)
    started = time.monotonic()
    results = run(backend, make_pairs(50))
    elapsed = time.monotonic() - started
    assert len(results) == 50
    assert results["p17"]["error"]["type"] == "TimeoutError"
    assert sum(1 for result in results.values() if result["score"] == 1.0) == 49
    # The one timing bound the specification requires.
    assert elapsed < 2 * timeout


def test_orchestrator_local_exit_fails_one_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import os

    def agreement(annotation_1, annotation_2, per_label=False):
        if annotation_1["index"] == 7:
            os._exit(1)
        return 1.0
    """
    backend = PoolBackend(pool, write_metric(tmp_path, source), timeout=10)
    results = run(backend, make_pairs(20))
    assert results["p7"]["error"]["type"] == "WorkerCrashed"
    assert "exited with code 1 while scoring this pair" in results["p7"]["error"]["message"]
    assert sum(1 for result in results.values() if result["score"] == 1.0) == 19


def test_orchestrator_local_hard_kill_fails_one_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import signal

    def agreement(annotation_1, annotation_2, per_label=False):
        if annotation_1["index"] == 3:
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            while True:
                pass
        return 1.0
    """
    backend = PoolBackend(pool, write_metric(tmp_path, source), timeout=1)
    results = run(backend, make_pairs(10))
    assert results["p3"]["error"]["type"] == "Timeout"
    assert "timeout of 1 s" in results["p3"]["error"]["message"]
    assert sum(1 for result in results.values() if result["score"] == 1.0) == 9


def test_orchestrator_local_memory_error_stays_per_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    def agreement(annotation_1, annotation_2, per_label=False):
        if annotation_1["index"] == 4:
            return float(len(bytearray(4 * 1024**3)))
        return 1.0
    """
    backend = PoolBackend(pool, write_metric(tmp_path, source), timeout=10, memory_mb=512)
    results = run(backend, make_pairs(10))
    assert results["p4"]["error"]["type"] == "MemoryError"
    assert sum(1 for result in results.values() if result["score"] == 1.0) == 9


def test_orchestrator_local_per_label(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    def agreement(first, second, **options):
        if options.get("per_label"):
            return {"A": 0.5}
        return 0.25
    """
    backend = PoolBackend(pool, write_metric(tmp_path, source), timeout=10)
    results = score_pairs(backend, "local-metric", make_pairs(3), per_label=True, request_id="r", project="p")
    assert all(result["per_label"] == {"A": 0.5} for result in results.values())
    assert all(result["score"] == 0.25 for result in results.values())
