"""WorkerPool with real worker processes and metric files written to tmp_path."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.backends.base import BatchFailedError
from custom_metrics.sandbox import GRACE_SECONDS, WorkerPool


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2) as worker_pool:
        yield worker_pool


def write_metric(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metric.py").write_text(textwrap.dedent(source), "utf-8")
    return folder


def make_payload(count: int, *, per_label: bool = False) -> dict[str, Any]:
    pairs = [
        {"id": f"p{index}", "annotation_1": {"index": index}, "annotation_2": {"index": index}}
        for index in range(count)
    ]
    return {"pairs": pairs, "per_label": per_label, "request_id": "request-1", "project": "proj"}


def reported(source_body: str) -> str:
    """A metric that reports a value about its process through the error path: it raises ValueError(value)."""
    return f"import os\n\ndef agreement(first, second, per_label=False):\n    raise ValueError({source_body})\n"


def report_of(response: dict[str, Any]) -> str:
    message: str = response["results"][0]["error"]["message"]
    return message.rsplit(" (metric.py, line", 1)[0]


def test_pool_scores_batch(pool: WorkerPool, tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, "def agreement(a, b, per_label=False):\n    return 1.0 if a == b else 0.0\n")
    response = pool.invoke(code_dir, make_payload(3), 10, 512)
    assert [result["score"] for result in response["results"]] == [1.0, 1.0, 1.0]
    assert response["not_run"] == []


def test_pool_user_print_keeps_protocol(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import sys

    def agreement(a, b, per_label=False):
        print("noise " * 1000)
        sys.stdout.write("\\x00\\x00\\x10\\x00 raw bytes\\n")
        sys.stdout.flush()
        print(input() if False else "", end="")
        return 0.5
    """
    code_dir = write_metric(tmp_path, source)
    response = pool.invoke(code_dir, make_payload(20), 10, 512)
    assert [result["score"] for result in response["results"]] == [0.5] * 20


def test_pool_metric_reads_no_stdin(pool: WorkerPool, tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, reported("repr(__import__('sys').stdin.read())"))
    assert report_of(pool.invoke(code_dir, make_payload(1), 10, 512)) == "''"


def test_pool_environment_is_built_from_scratch(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOM_METRICS_PARENT_SECRET", "do-not-leak")
    code_dir = write_metric(tmp_path, reported("repr(sorted(os.environ))"))
    keys = report_of(pool.invoke(code_dir, make_payload(1), 10, 512))
    assert "CUSTOM_METRICS_PARENT_SECRET" not in keys
    assert keys == repr(sorted(["HOME", "LANG", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH", "TMPDIR"]))


def test_pool_scratch_directory_is_cwd_and_removed(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, reported("os.getcwd() + '|' + os.environ['HOME'] + '|' + os.environ['TMPDIR']"))
    with WorkerPool(1) as pool:
        cwd, home, temporary = report_of(pool.invoke(code_dir, make_payload(1), 10, 512)).split("|")
        assert cwd == home
        assert home == temporary
        assert Path(cwd).is_dir()
        assert Path(cwd) != Path.cwd()
    assert not Path(cwd).exists()


def test_pool_memory_limit_raises_memory_error(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    def agreement(a, b, per_label=False):
        if a["index"] == 1:
            block = bytearray(4 * 1024**3)
            return float(len(block) > 0)
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    response = pool.invoke(code_dir, make_payload(3), 10, 512)
    errors = [result["error"] for result in response["results"]]
    assert errors[0] is None
    assert errors[1]["type"] == "MemoryError"
    assert errors[1]["line"] == 4
    assert errors[2] is None


def test_pool_address_space_limit_applied(pool: WorkerPool, tmp_path: Path) -> None:
    code_dir = write_metric(
        tmp_path, reported("repr(__import__('resource').getrlimit(__import__('resource').RLIMIT_AS))")
    )
    limit = 300 * 1024 * 1024
    assert report_of(pool.invoke(code_dir, make_payload(1), 10, 300)) == repr((limit, limit))


def test_pool_exit_names_culprit_and_recovers(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import os

    def agreement(a, b, per_label=False):
        if a["index"] == 2:
            print("about to exit")
            os._exit(3)
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    with pytest.raises(BatchFailedError) as caught:
        pool.invoke(code_dir, make_payload(4), 10, 512)
    assert caught.value.reason == "crash"
    assert caught.value.culprit_id == "p2"
    assert "exited with code 3" in caught.value.message
    assert "about to exit" not in caught.value.message
    response = pool.invoke(code_dir, make_payload(2), 10, 512)
    assert [result["score"] for result in response["results"]] == [1.0, 1.0]


def test_pool_sigkill_reports_memory(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import os
    import signal

    def agreement(a, b, per_label=False):
        os.kill(os.getpid(), signal.SIGKILL)
    """
    code_dir = write_metric(tmp_path, source)
    with pytest.raises(BatchFailedError) as caught:
        pool.invoke(code_dir, make_payload(2), 10, 256)
    assert caught.value.reason == "memory"
    assert caught.value.culprit_id == "p0"
    assert "256 MiB" in caught.value.message


def test_pool_hard_deadline_kills_unstoppable_metric(pool: WorkerPool, tmp_path: Path) -> None:
    # Blocking SIGALRM defeats the runtime's own deadline, so only the pool's hard deadline can stop it.
    source = """
    import signal

    def agreement(a, b, per_label=False):
        if a["index"] == 1:
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            while True:
                pass
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    timeout = 1.0
    started = time.monotonic()
    with pytest.raises(BatchFailedError) as caught:
        pool.invoke(code_dir, make_payload(3), timeout, 512)
    elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert caught.value.culprit_id == "p1"
    assert "timeout of 1 s" in caught.value.message
    assert elapsed < timeout + GRACE_SECONDS + 2.0
    response = pool.invoke(code_dir, {**make_payload(1)}, 10, 512)
    assert response["results"][0]["score"] == 1.0


def test_pool_runtime_deadline_returns_not_run(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    def agreement(a, b, per_label=False):
        if a["index"] == 1:
            while True:
                pass
        return 1.0
    """
    code_dir = write_metric(tmp_path, source)
    response = pool.invoke(code_dir, make_payload(4), 1.0, 512)
    assert [result["id"] for result in response["results"]] == ["p0", "p1"]
    assert response["results"][1]["error"]["type"] == "TimeoutError"
    assert response["not_run"] == ["p2", "p3"]


def test_pool_reuses_worker_for_same_metric(pool: WorkerPool, tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, reported("str(os.getpid())"))
    first = report_of(pool.invoke(code_dir, make_payload(1), 10, 512))
    second = report_of(pool.invoke(code_dir, make_payload(1), 10, 512))
    assert first == second


def test_pool_separates_metrics(tmp_path: Path) -> None:
    first_dir = write_metric(tmp_path / "first", "def agreement(a, b, per_label=False):\n    return 0.25\n")
    second_dir = write_metric(tmp_path / "second", "def agreement(a, b, per_label=False):\n    return 0.75\n")
    with WorkerPool(1) as pool:
        for _ in range(2):
            assert pool.invoke(first_dir, make_payload(1), 10, 512)["results"][0]["score"] == 0.25
            assert pool.invoke(second_dir, make_payload(1), 10, 512)["results"][0]["score"] == 0.75


def test_pool_concurrent_invokes(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, "def agreement(a, b, per_label=False):\n    return a['index'] / 100\n")
    scores: list[list[float]] = []
    failures: list[BaseException] = []

    def call() -> None:
        try:
            for _ in range(5):
                response = pool.invoke(code_dir, make_payload(50), 10, 512)
                scores.append([result["score"] for result in response["results"]])
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            failures.append(exc)

    with WorkerPool(2) as pool:
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert len(scores) == 20
    assert all(batch == [index / 100 for index in range(50)] for batch in scores)


def test_pool_stderr_reaches_log_callback(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, "def agreement(a, b, per_label=False):\n    print('hello log')\n    return 1.0\n")
    lines: list[str] = []
    with WorkerPool(1, on_log=lambda folder, line: lines.append(line)) as pool:
        pool.invoke(code_dir, make_payload(1), 10, 512)
    assert "hello log" in lines
    assert any('"message": "batch scored"' in line for line in lines)


def test_pool_closed_rejects_invoke(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path, "def agreement(a, b, per_label=False):\n    return 1.0\n")
    pool = WorkerPool(1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.invoke(code_dir, make_payload(1), 10, 512)


def test_pool_invalid_size() -> None:
    with pytest.raises(ValueError, match="pool size 0"):
        WorkerPool(0)


def test_pool_kills_processes_the_metric_started(tmp_path: Path) -> None:
    source = """
    import subprocess

    def agreement(a, b, per_label=False):
        child = subprocess.Popen(["sleep", "60"])
        raise ValueError(str(child.pid))
    """
    code_dir = write_metric(tmp_path, source)
    with WorkerPool(1) as pool:
        child_pid = int(report_of(pool.invoke(code_dir, make_payload(1), 10, 512)))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _is_running(child_pid):
        time.sleep(0.05)
    assert not _is_running(child_pid)


def _is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")


def test_pool_import_exit_fails_every_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import os

    os._exit(4)
    """
    code_dir = write_metric(tmp_path, source)
    response = pool.invoke(code_dir, make_payload(3), 10, 512)
    assert response["not_run"] == []
    assert [result["id"] for result in response["results"]] == ["p0", "p1", "p2"]
    for result in response["results"]:
        assert result["score"] is None
        assert result["error"]["type"] == "WorkerCrashed"
        assert "exited with code 4 while importing metric.py" in result["error"]["message"]


def test_pool_import_hang_fails_every_pair(pool: WorkerPool, tmp_path: Path) -> None:
    source = """
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    while True:
        pass
    """
    code_dir = write_metric(tmp_path, source)
    response = pool.invoke(code_dir, make_payload(2), 1.0, 512)
    for result in response["results"]:
        assert result["error"]["type"] == "Timeout"
        assert "while importing metric.py" in result["error"]["message"]
