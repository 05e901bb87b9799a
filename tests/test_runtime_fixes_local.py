"""The local backend: concurrent deletes, stale temporary files, and the function log files."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.backends.local_logs import FunctionLogWriter, read_logs
from custom_metrics.errors import FunctionNotFoundError
from custom_metrics.service import MetricService

NAME = "custom-metric-proj"
CONSTANT = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
# 2026-01-02T00:00:00Z; the tests pass their own clock so the day of the log file is known.
DAY_START = 1767312000.0


@pytest.fixture
def service(state_dir: Path) -> Iterator[MetricService]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    yield service
    service.close()


def test_concurrent_deletes_one_succeeds(service: MetricService) -> None:
    service.put_metric("proj", code=CONSTANT, force=True)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def delete() -> None:
        barrier.wait()
        try:
            service.delete_metric("proj")
            outcomes.append("deleted")
        except FunctionNotFoundError:
            outcomes.append("not found")
        except Exception as exc:  # noqa: BLE001 - any other exception is the bug under test
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=delete) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["deleted"] + ["not found"] * 7


def test_deploy_removes_stale_temporary_file(service: MetricService, state_dir: Path) -> None:
    service.put_metric("proj", code=CONSTANT, force=True)
    folder = state_dir / "functions" / NAME
    stale = folder / ".function.json.abc123"
    fresh = folder / ".function.json.def456"
    stale.write_text("{")
    fresh.write_text("{")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    service.put_metric("proj", code=CONSTANT.replace("1.0", "0.5"), force=True)
    assert not stale.exists()
    assert fresh.exists()


def write_lines(writer: FunctionLogWriter, code_dir: Path, count: int) -> None:
    for index in range(count):
        writer.write(code_dir, f"line {index}", "req-1")


def test_log_writer_drops_lines_past_limit(tmp_path: Path) -> None:
    code_dir = tmp_path / "functions" / NAME / "code" / "abc"
    code_dir.mkdir(parents=True)
    writer = FunctionLogWriter(tmp_path / "functions", clock=lambda: DAY_START + 5, max_day_bytes=300)
    write_lines(writer, code_dir, 20)
    path = tmp_path / "functions" / NAME / "logs" / "2026-01-02.jsonl"
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert messages[0] == "line 0"
    assert "line 19" not in messages
    assert "are dropped" in messages[-1]
    assert path.stat().st_size < 300 + 200


def test_log_writer_skips_code_outside_functions(tmp_path: Path) -> None:
    writer = FunctionLogWriter(tmp_path / "functions", clock=lambda: DAY_START)
    writer.write(tmp_path / "trial", "hello", "req-1")
    assert not (tmp_path / "functions").exists()


def test_read_logs_limit_keeps_newest_last(tmp_path: Path) -> None:
    code_dir = tmp_path / "functions" / NAME / "code" / "abc"
    code_dir.mkdir(parents=True)
    clock = iter(DAY_START + second for second in range(100))
    writer = FunctionLogWriter(tmp_path / "functions", clock=lambda: next(clock))
    write_lines(writer, code_dir, 10)
    rows = read_logs(tmp_path / "functions" / NAME, DAY_START, DAY_START + 7, limit=3)
    assert [row.message for row in rows] == ["line 5", "line 6", "line 7"]
    assert rows[0].request_id == "req-1"
    assert rows[0].timestamp == "2026-01-02T00:00:05.000+00:00"


def test_logs_returns_worker_prints(service: MetricService, tmp_path: Path) -> None:
    source = "def agreement(annotation_1, annotation_2, per_label=False):\n    print('hello', annotation_1['id'])\n"
    source += "    return 1.0\n"
    service.put_metric("proj", code=source, force=True)
    annotation = {"from_name": "c", "to_name": "t", "type": "choices", "value": {"choices": ["a"]}}
    tasks = [{"id": 1, "annotations": [{"id": 7, "result": [annotation]}, {"id": 8, "result": [annotation]}]}]
    result = service.score("proj", tasks)
    service.close()  # the output is drained by the time the workers are stopped
    rows = service.logs("proj", None, time.time() - 60, time.time() + 60, 100)["rows"]
    hello = [row for row in rows if row["message"] == "hello 7"]
    assert len(hello) == 1
    assert hello[0]["request_id"] == result["request_id"]
