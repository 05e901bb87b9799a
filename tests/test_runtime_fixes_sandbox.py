"""Real worker processes: output tagged with request ids, close() during a batch, parent checks, messages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.backends.base import BatchFailedError
from custom_metrics.sandbox import WorkerPool
from custom_metrics_runtime.worker import EXIT_ORPHANED

LAYER_DIR = Path(__file__).resolve().parent.parent / "layers" / "metric_runtime"


def write_metric(folder: Path, source: str) -> Path:
    (folder / "metric.py").write_text(textwrap.dedent(source), "utf-8")
    return folder


def make_payload(count: int, *, request_id: str = "request-1", per_label: bool = False) -> dict[str, Any]:
    pairs = [{"id": f"p{index}", "annotation_1": {"index": index}, "annotation_2": {}} for index in range(count)]
    return {"pairs": pairs, "per_label": per_label, "request_id": request_id, "project": "proj"}


def test_output_carries_request_id(tmp_path: Path) -> None:
    code_dir = write_metric(
        tmp_path, "def agreement(a, b, per_label=False):\n    print('hello', a['index'])\n    return 1.0\n"
    )
    lines: list[tuple[str, str | None]] = []
    with WorkerPool(1, on_output=lambda folder, line, request_id: lines.append((line, request_id))) as pool:
        pool.invoke(code_dir, make_payload(1, request_id="first"), 10, 512)
        pool.invoke(code_dir, make_payload(1, request_id="second"), 10, 512)
    assert ("hello 0", "first") in lines
    assert ("hello 0", "second") in lines
    assert all(not line.startswith("\x1e") for line, _ in lines)


def test_close_kills_busy_worker(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, "import time\n\ndef agreement(a, b, per_label=False):\n    time.sleep(600)\n")
    pool = WorkerPool(1)
    failures: list[BaseException] = []
    started = threading.Event()

    def invoke() -> None:
        started.set()
        try:
            pool.invoke(code_dir, make_payload(1), 300, 512)
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever the thread raised
            failures.append(exc)

    thread = threading.Thread(target=invoke)
    thread.start()
    started.wait(5)
    # Wait until the worker has started and runs the pair, so that close() finds it busy.
    threading.Event().wait(1.5)
    pool.close()
    thread.join(10)  # bounded: without the kill, the batch would run for 300 s
    assert not thread.is_alive()
    assert len(failures) == 1
    assert isinstance(failures[0], BatchFailedError)
    assert failures[0].reason == "cancelled"


def test_worker_exits_when_parent_is_not_expected(tmp_path: Path) -> None:
    index_file = tmp_path / "index"
    index_file.write_bytes(b"\xff" * 8)
    bootstrap = "import sys; sys.path.insert(0, sys.argv[1]); from custom_metrics_runtime.worker import main; "
    bootstrap += "sys.exit(main(sys.argv[2:]))"
    # Pid 1 is never this test's pid, so the worker must see that its parent is not the expected one.
    command = [sys.executable, "-I", "-c", bootstrap, str(LAYER_DIR), str(tmp_path), str(index_file), "256", "1"]
    completed = subprocess.run(command, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert completed.returncode == EXIT_ORPHANED


def test_crash_message_has_no_output_or_pair_id(tmp_path: Path) -> None:
    source = """
    import os

    def agreement(a, b, per_label=False):
        if a["index"] == 1:
            print('{"level": "INFO", "raw": "log line"}')
            os._exit(3)
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    with WorkerPool(1) as pool, pytest.raises(BatchFailedError) as caught:
        pool.invoke(code_dir, make_payload(3), 10, 512)
    assert caught.value.culprit_id == "p1"
    assert caught.value.message == "the metric worker process exited with code 3 while scoring this pair"


def test_huge_response_crash_reports_memory(tmp_path: Path) -> None:
    source = """
    def agreement(a, b, per_label=False):
        if per_label:
            return {f"label-{index}": 0.5 for index in range(500_000)}
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    with WorkerPool(1) as pool, pytest.raises(BatchFailedError) as caught:
        pool.invoke(code_dir, make_payload(1, per_label=True), 30, 256)
    assert caught.value.reason == "memory"
    assert "limit 256 MiB" in caught.value.message
    assert "\n" not in caught.value.message
    assert "batch scored" not in caught.value.message
