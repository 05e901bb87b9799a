"""The CLI as a subprocess: --timeout, stopping on signals, per-label errors, logs, and quiet failures."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CLI = Path(sys.executable).parent / "custom-metrics"
HANGING = "def agreement(annotation_1, annotation_2, per_label=False):\n    while True:\n        pass\n"


def cli_environment(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(state_dir)}


def run_cli(state_dir: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=cli_environment(state_dir),
        timeout=120,
        check=False,
    )


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, "utf-8")
    return path


def make_tasks(count: int) -> list[dict[str, Any]]:
    choice = {"from_name": "c", "to_name": "t", "type": "choices", "value": {"choices": ["a"]}}
    return [
        {
            "id": index + 1,
            "data": {"text": "x"},
            "annotations": [
                {"id": 100 + index, "completed_by": 1, "result": [choice]},
                {"id": 200 + index, "completed_by": 2, "result": [choice]},
            ],
        }
        for index in range(count)
    ]


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    return write(tmp_path, "tasks.json", json.dumps(make_tasks(10)))


def test_check_timeout_stops_after_two_pairs(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "hang.py", HANGING)
    result = run_cli(state_dir, "check", metric, tasks, "--timeout", "1")
    assert result.returncode == 1
    assert result.stdout.count("TimeoutError") == 2
    assert result.stdout.count("NotRun") == 8
    assert "timeout of 1 s per batch stopped 2 of the pairs" in result.stdout
    assert "--timeout SECONDS" in result.stdout


def test_check_timeout_rejects_zero(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "hang.py", HANGING)
    result = run_cli(state_dir, "check", metric, tasks, "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout" in result.stderr


def test_run_timeout_applies_to_batches(state_dir: Path, tmp_path: Path) -> None:
    metric = write(tmp_path, "hang.py", HANGING)
    one_task = write(tmp_path, "one.json", json.dumps(make_tasks(1)))
    result = run_cli(state_dir, "run", metric, one_task, "--timeout", "1", "--format", "json")
    assert result.returncode == 0, result.stderr
    error = json.loads(result.stdout)["pairs"][0]["error"]
    assert error["type"] == "TimeoutError"
    assert "timeout 1 s" in error["message"]


def worker_pids(pid: int) -> set[int]:
    children: set[int] = set()
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            children |= {int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()}
        except OSError:
            continue
    return children


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_hanging_check(state_dir: Path, tmp_path: Path, tasks: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    metric = write(tmp_path, "hang.py", HANGING)
    command = [str(CLI), "check", str(metric), str(tasks), "--timeout", "300"]
    process = subprocess.Popen(
        command, env=cli_environment(state_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    workers: set[int] = set()
    while not workers and time.monotonic() < deadline:
        workers = worker_pids(process.pid)
        time.sleep(0.1)
    assert workers, "the CLI started no worker within 30 s"
    return process, workers


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(is_running(pid) for pid in pids):
        time.sleep(0.05)
    return {pid for pid in pids if is_running(pid)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux-only")
@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM])
def test_killed_cli_leaves_no_worker(state_dir: Path, tmp_path: Path, tasks: Path, signal_number: int) -> None:
    process, workers = start_hanging_check(state_dir, tmp_path, tasks)
    process.send_signal(signal_number)
    process.wait(10)
    assert wait_gone(workers, 5) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux-only")
def test_interrupted_cli_stops_within_a_second(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    process, workers = start_hanging_check(state_dir, tmp_path, tasks)
    time.sleep(0.5)  # let the worker enter agreement()
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    finally:
        process.kill()
    # The brief's bound is about a second; 3 s leaves room for a loaded machine.
    assert time.monotonic() - interrupted < 3.0
    assert wait_gone(workers, 2) == set()


PER_LABEL_BROKEN = """
def agreement(annotation_1, annotation_2, per_label=False):
    if per_label:
        return {"x": float("nan")}
    return 0.75
"""


def test_run_per_label_error_keeps_agreement(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "broken.py", PER_LABEL_BROKEN)
    plain = json.loads(run_cli(state_dir, "run", metric, tasks, "--format", "json").stdout)
    per_label = json.loads(run_cli(state_dir, "run", metric, tasks, "--per-label", "--format", "json").stdout)
    assert per_label["agreement"] == plain["agreement"]
    assert per_label["errors"] == 0
    assert per_label["pairs"][0]["per_label_error"]["type"] == "InvalidReturnValue"
    assert plain["pairs"][0]["per_label_error"] is None


def test_run_per_label_error_in_csv_and_table(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "broken.py", PER_LABEL_BROKEN)
    rows = list(
        csv.DictReader(io.StringIO(run_cli(state_dir, "run", metric, tasks, "--per-label", "--format", "csv").stdout))
    )
    assert rows[0]["per_label_error"].startswith("InvalidReturnValue: ")
    table = run_cli(state_dir, "run", metric, tasks, "--per-label").stdout
    assert "Errors" in table
    assert "per-label breakdown (score kept): InvalidReturnValue" in table


PRINTING = "def agreement(annotation_1, annotation_2, per_label=False):\n    print('hello', annotation_1['id'])\n"
PRINTING += "    return 1.0\n"


def test_logs_show_prints_with_request_id(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "printing.py", PRINTING)
    assert run_cli(state_dir, "deploy", "proj", metric, "--force").returncode == 0
    request_id = json.loads(run_cli(state_dir, "agreement", "proj", tasks, "--format", "json").stdout)["request_id"]
    logs = run_cli(state_dir, "logs", "proj")
    assert logs.returncode == 0, logs.stderr
    assert f"[{request_id}] hello 100" in logs.stdout


def test_verbose_echoes_worker_output(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "printing.py", PRINTING)
    verbose = run_cli(state_dir, "-v", "run", metric, tasks)
    quiet = run_cli(state_dir, "run", metric, tasks)
    assert "hello 100" in verbose.stderr
    assert "hello 100" not in quiet.stderr


def test_crashing_metric_logs_nothing_without_verbose(state_dir: Path, tmp_path: Path, tasks: Path) -> None:
    metric = write(tmp_path, "crash.py", "import os\n\ndef agreement(a, b, per_label=False):\n    os._exit(3)\n")
    result = run_cli(state_dir, "run", metric, tasks, "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["errors"] == 10
    assert result.stderr == ""
