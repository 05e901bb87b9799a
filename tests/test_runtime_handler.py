"""The metric runtime run in this process: return checks, errors, calling conventions, the deadline, the log line."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from custom_metrics_runtime.handler import handle_batch, lambda_handler


class FakeContext:
    """The part of Lambda's context object that the runtime reads."""

    def __init__(self, remaining_seconds: float = 30.0) -> None:
        self.aws_request_id = "invocation-1"
        self._deadline = time.monotonic() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def write_metric(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metric.py").write_text(textwrap.dedent(source), "utf-8")
    return folder


def make_event(count: int = 1, *, per_label: bool = False, annotation: Any = None) -> dict[str, Any]:
    pairs = [
        {"id": f"p{index}", "annotation_1": annotation or {"index": index}, "annotation_2": {"index": index}}
        for index in range(count)
    ]
    return {"pairs": pairs, "per_label": per_label, "request_id": "request-1", "project": "proj"}


def run_one(tmp_path: Path, source: str, *, per_label: bool = False) -> dict[str, Any]:
    code_dir = write_metric(tmp_path / "code", source)
    response = handle_batch(make_event(per_label=per_label), FakeContext(), code_dir=code_dir)
    assert response["not_run"] == []
    result: dict[str, Any] = response["results"][0]
    return result


RETURNING = "def agreement(annotation_1, annotation_2, per_label=False):\n    return {value}\n"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("1", 1.0), ("0", 0.0), ("0.25", 0.25), ("__import__('fractions').Fraction(1, 4)", 0.25)],
)
def test_handler_accepts_real_numbers(tmp_path: Path, expression: str, expected: float) -> None:
    result = run_one(tmp_path, RETURNING.format(value=expression))
    assert result["error"] is None
    assert result["score"] == expected
    assert type(result["score"]) is float


def test_handler_accepts_numpy_float(tmp_path: Path) -> None:
    result = run_one(tmp_path, RETURNING.format(value="__import__('numpy').float32(0.5)"))
    assert result["error"] is None
    assert result["score"] == 0.5


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("None", "None"),
        ("float('nan')", "nan"),
        ("float('inf')", "inf"),
        ("-float('inf')", "-inf"),
        ("1.5", "1.5"),
        ("-0.1", "-0.1"),
        ("'x'", "'x'"),
        ("True", "True"),
        ("__import__('numpy').bool_(True)", "np.True_"),
        ("[0.5]", "[0.5]"),
    ],
)
def test_handler_rejects_invalid_score(tmp_path: Path, expression: str, shown: str) -> None:
    result = run_one(tmp_path, RETURNING.format(value=expression))
    assert result["score"] is None
    assert result["error"]["type"] == "InvalidReturnValue"
    assert f"returned {shown} (" in result["error"]["message"]
    assert "expected" in result["error"]["message"]


def test_handler_numpy_bool_names_its_type(tmp_path: Path) -> None:
    result = run_one(tmp_path, RETURNING.format(value="__import__('numpy').bool_(True)"))
    assert "(numpy.bool)" in result["error"]["message"]
    assert "booleans are not scores" in result["error"]["message"]


def test_handler_truncates_long_return_repr(tmp_path: Path) -> None:
    result = run_one(tmp_path, RETURNING.format(value="'y' * 10_000"))
    assert result["error"]["type"] == "InvalidReturnValue"
    assert len(result["error"]["message"]) < 300


PER_LABEL = """
def agreement(annotation_1, annotation_2, per_label=False):
    if per_label:
        return {breakdown}
    return 0.5
"""


def test_handler_per_label_dict(tmp_path: Path) -> None:
    result = run_one(tmp_path, PER_LABEL.format(breakdown="{'PER': 1, 'ORG': 0.25}"), per_label=True)
    assert result["error"] is None
    assert result["score"] == 0.5
    assert result["per_label"] == {"PER": 1.0, "ORG": 0.25}


def test_handler_per_label_plain_number_means_none(tmp_path: Path) -> None:
    result = run_one(tmp_path, PER_LABEL.format(breakdown="0.5"), per_label=True)
    assert result["error"] is None
    assert result["score"] == 0.5
    assert result["per_label"] is None


def test_handler_per_label_false_calls_once(tmp_path: Path) -> None:
    source = """
    def agreement(annotation_1, annotation_2, per_label=False):
        if per_label:
            raise AssertionError("called with per_label=True")
        return 1.0
    """
    result = run_one(tmp_path, source, per_label=False)
    assert result["error"] is None
    assert result["per_label"] is None


@pytest.mark.parametrize(
    ("breakdown", "fragment"),
    [
        ("{True: 0.5}", "key True (bool)"),
        ("{'PER': 2.0}", "2.0 (float) for label 'PER'"),
        ("{'PER': float('nan')}", "nan (float) for label 'PER'"),
        ("{'PER': None}", "None (NoneType) for label 'PER'"),
        ("{'PER': True}", "True (bool) for label 'PER'"),
        ("'x'", "returned 'x' (str)"),
        ("None", "returned None (NoneType)"),
    ],
)
def test_handler_rejects_invalid_per_label(tmp_path: Path, breakdown: str, fragment: str) -> None:
    result = run_one(tmp_path, PER_LABEL.format(breakdown=breakdown), per_label=True)
    assert result["score"] is not None
    assert result["error"] is None
    assert result["per_label"] is None
    assert result["per_label_error"]["type"] == "InvalidReturnValue"
    assert fragment in result["per_label_error"]["message"]


def test_handler_exception_names_line(tmp_path: Path) -> None:
    source = """
    def helper(value):
        return value["missing"]

    def agreement(annotation_1, annotation_2, per_label=False):
        return helper(annotation_1)
    """
    result = run_one(tmp_path, source)
    assert result["score"] is None
    assert result["error"]["type"] == "KeyError"
    assert result["error"]["line"] == 3
    assert result["error"]["message"] == "'missing' (metric.py, line 3)"


def test_handler_exception_inside_library_names_user_line(tmp_path: Path) -> None:
    source = """
    import json

    def agreement(annotation_1, annotation_2, per_label=False):
        return json.loads("{not json")
    """
    result = run_one(tmp_path, source)
    assert result["error"]["type"] == "JSONDecodeError"
    assert result["error"]["line"] == 5


@pytest.mark.parametrize(
    ("statement", "error_type"),
    [("raise MemoryError", "MemoryError"), ("raise SystemExit(3)", "SystemExit"), ("raise ValueError", "ValueError")],
)
def test_handler_base_exceptions_stay_per_pair(tmp_path: Path, statement: str, error_type: str) -> None:
    source = f"""
    def agreement(annotation_1, annotation_2, per_label=False):
        if annotation_1["index"] == 1:
            {statement}
        return 1.0
    """
    code_dir = write_metric(tmp_path / "code", source)
    response = handle_batch(make_event(3), FakeContext(), code_dir=code_dir)
    errors = [result["error"] for result in response["results"]]
    assert errors[0] is None
    assert errors[1]["type"] == error_type
    assert errors[1]["line"] == 4
    assert errors[2] is None


def test_handler_import_error_fails_every_pair(tmp_path: Path) -> None:
    source = """
    import math

    raise RuntimeError("setup failed")

    def agreement(annotation_1, annotation_2, per_label=False):
        return 1.0
    """
    code_dir = write_metric(tmp_path / "code", source)
    response = handle_batch(make_event(3), FakeContext(), code_dir=code_dir)
    assert len(response["results"]) == 3
    for result in response["results"]:
        assert result["error"] == {
            "type": "RuntimeError",
            "message": "setup failed (metric.py, line 4)",
            "line": 4,
        }


def test_handler_syntax_error_names_line(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path / "code", "def agreement(a, b, per_label=False):\n    return (\n")
    response = handle_batch(make_event(1), FakeContext(), code_dir=code_dir)
    error = response["results"][0]["error"]
    assert error["type"] == "SyntaxError"
    assert error["line"] == 2


def test_handler_missing_agreement(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path / "code", "def score(a, b):\n    return 1.0\n")
    response = handle_batch(make_event(1), FakeContext(), code_dir=code_dir)
    error = response["results"][0]["error"]
    assert error["type"] == "MetricDefinitionError"
    assert "agreement" in error["message"]


@pytest.mark.parametrize(
    "signature",
    [
        "def agreement(first, second, breakdown=False):",
        "def agreement(first, second, breakdown):",
        "def agreement(first, second, /, breakdown):",
        "def agreement(first, second, *, per_label=False):",
        "def agreement(first, second, **options):",
        "def agreement(*args):",
    ],
)
def test_handler_passes_per_label_by_signature(tmp_path: Path, signature: str) -> None:
    source = f"""
    {signature}
        values = locals()
        flag = values.get("breakdown", values.get("per_label"))
        if "options" in values:
            flag = values["options"]["per_label"]
        if "args" in values:
            flag = values["args"][2]
        if flag is True:
            return {{"L": 0.25}}
        if flag is False:
            return 0.75
        raise AssertionError(f"unexpected per_label {{flag!r}}")
    """
    result = run_one(tmp_path, source, per_label=True)
    assert result["error"] is None
    assert result["score"] == 0.75
    assert result["per_label"] == {"L": 0.25}


def test_handler_two_parameter_metric_has_no_breakdown(tmp_path: Path) -> None:
    result = run_one(tmp_path, "def agreement(first, second):\n    return 0.5\n", per_label=True)
    assert result["error"] is None
    assert result["score"] == 0.5
    assert result["per_label"] is None


HANGS_ON_PAIR_1 = """
def agreement(annotation_1, annotation_2, per_label=False):
    if annotation_1["index"] == 1:
        while True:
            pass
    return 1.0
"""


def test_handler_deadline_stops_hanging_pair(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path / "code", HANGS_ON_PAIR_1)
    started = time.monotonic()
    response = handle_batch(make_event(4), FakeContext(remaining_seconds=1.0), code_dir=code_dir)
    elapsed = time.monotonic() - started
    assert [result["id"] for result in response["results"]] == ["p0", "p1"]
    error = response["results"][1]["error"]
    assert error["type"] == "TimeoutError"
    assert "timeout 1 s" in error["message"]
    assert error["line"] in (4, 5)
    assert response["not_run"] == ["p2", "p3"]
    assert elapsed < 1.0


def test_handler_deadline_survives_swallowed_timeout(tmp_path: Path) -> None:
    source = """
    import time

    def agreement(annotation_1, annotation_2, per_label=False):
        try:
            while True:
                pass
        except BaseException:
            pass
        while True:
            time.sleep(0.01)
    """
    code_dir = write_metric(tmp_path / "code", source)
    response = handle_batch(make_event(2), FakeContext(remaining_seconds=1.0), code_dir=code_dir)
    assert response["results"][0]["error"]["type"] == "TimeoutError"
    assert response["not_run"] == ["p1"]


def test_handler_deadline_outside_main_thread_skips_alarm(tmp_path: Path) -> None:
    source = """
    import time

    def agreement(annotation_1, annotation_2, per_label=False):
        time.sleep(0.3)
        return 1.0
    """
    code_dir = write_metric(tmp_path / "code", source)
    responses: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: responses.append(handle_batch(make_event(4), FakeContext(0.5), code_dir=code_dir))
    )
    thread.start()
    thread.join(timeout=10)
    results = responses[0]["results"]
    assert [result["error"] for result in results] == [None, None]
    assert responses[0]["not_run"] == ["p2", "p3"]


def test_handler_logs_one_line_without_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code_dir = write_metric(tmp_path / "code", RETURNING.format(value="'bad'"))
    handle_batch(make_event(2, annotation={"text": "SECRET-ANNOTATION"}), FakeContext(), code_dir=code_dir)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["request_id"] == "request-1"
    assert record["aws_request_id"] == "invocation-1"
    assert record["project"] == "proj"
    assert record["pairs"] == 2
    assert record["errors"] == 2
    assert record["not_run"] == 0
    assert "SECRET-ANNOTATION" not in lines[0]


def test_handler_rejects_malformed_event(tmp_path: Path) -> None:
    code_dir = write_metric(tmp_path / "code", RETURNING.format(value="1.0"))
    with pytest.raises(ValueError, match="pair 0 is not an object with a str 'id'"):
        handle_batch({"pairs": [{"annotation_1": {}, "annotation_2": {}}]}, FakeContext(), code_dir=code_dir)


def test_lambda_handler_reads_task_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code_dir = write_metric(tmp_path / "task", RETURNING.format(value="0.125"))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(code_dir))
    response = lambda_handler(make_event(1), FakeContext())
    assert response["results"][0]["score"] == 0.125


def test_handler_import_timeout_fails_every_pair(tmp_path: Path) -> None:
    source = """
    while True:
        pass

    def agreement(annotation_1, annotation_2, per_label=False):
        return 1.0
    """
    code_dir = write_metric(tmp_path / "code", source)
    response = handle_batch(make_event(2), FakeContext(remaining_seconds=0.5), code_dir=code_dir)
    assert response["not_run"] == []
    for result in response["results"]:
        assert result["error"]["type"] == "TimeoutError"
        assert result["error"]["message"].startswith("importing metric.py was stopped at the invocation deadline")
        assert result["error"]["line"] in (2, 3)
