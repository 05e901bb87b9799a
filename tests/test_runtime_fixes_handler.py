"""The runtime in this process: per-label failures keep the score, int label keys, the MemoryError message."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from custom_metrics_runtime.handler import handle_batch


class Context:
    """The fields of Lambda's context object that the runtime reads; Lambda gives the memory as a str."""

    def __init__(self, memory_limit_in_mb: Any = None) -> None:
        self.aws_request_id = "invocation-1"
        self.memory_limit_in_mb = memory_limit_in_mb
        self._deadline = time.monotonic() + 30.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def score_one(tmp_path: Path, source: str, *, per_label: bool, context: Context | None = None) -> dict[str, Any]:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "metric.py").write_text(textwrap.dedent(source), "utf-8")
    event = {
        "pairs": [{"id": "p0", "annotation_1": {"index": 0}, "annotation_2": {"index": 0}}],
        "per_label": per_label,
        "request_id": "request-1",
        "project": "proj",
    }
    response = handle_batch(event, context or Context(), code_dir=code_dir)
    result: dict[str, Any] = response["results"][0]
    return result


BREAKDOWN = """
def agreement(annotation_1, annotation_2, per_label=False):
    if per_label:
        {body}
    return 0.75
"""


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ("return {'PER': float('nan')}", "InvalidReturnValue"),
        ("return {True: 0.5}", "InvalidReturnValue"),
        ("raise KeyError('labels')", "KeyError"),
    ],
)
def test_per_label_failure_keeps_score(tmp_path: Path, body: str, error_type: str) -> None:
    result = score_one(tmp_path, BREAKDOWN.format(body=body), per_label=True)
    assert result["score"] == 0.75
    assert result["error"] is None
    assert result["per_label"] is None
    assert result["per_label_error"]["type"] == error_type


def test_per_label_exception_names_line(tmp_path: Path) -> None:
    result = score_one(tmp_path, BREAKDOWN.format(body="raise KeyError('labels')"), per_label=True)
    assert result["per_label_error"]["line"] == 4


def test_per_label_int_keys_become_str(tmp_path: Path) -> None:
    result = score_one(tmp_path, BREAKDOWN.format(body="return {1: 0.5, 'PER': 1}"), per_label=True)
    assert result["per_label"] == {"1": 0.5, "PER": 1.0}
    assert result["per_label_error"] is None


def test_score_result_has_null_per_label_error(tmp_path: Path) -> None:
    result = score_one(tmp_path, BREAKDOWN.format(body="return 0.5"), per_label=False)
    assert result["per_label_error"] is None


def test_score_failure_has_null_per_label_error(tmp_path: Path) -> None:
    source = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 'x'\n"
    result = score_one(tmp_path, source, per_label=True)
    assert result["error"]["type"] == "InvalidReturnValue"
    assert result["per_label_error"] is None


MEMORY = "def agreement(annotation_1, annotation_2, per_label=False):\n    raise MemoryError\n"


def test_memory_error_names_lambda_limit(tmp_path: Path) -> None:
    result = score_one(tmp_path, MEMORY, per_label=False, context=Context(memory_limit_in_mb="512"))
    assert result["error"]["type"] == "MemoryError"
    assert result["error"]["message"].startswith("the metric ran out of memory (limit 512 MiB); ")
    assert "no message" not in result["error"]["message"]
    assert result["error"]["line"] == 2


def test_memory_error_without_known_limit(tmp_path: Path) -> None:
    result = score_one(tmp_path, MEMORY, per_label=False, context=Context(memory_limit_in_mb=None))
    assert result["error"]["message"].startswith("the metric ran out of memory; ")
