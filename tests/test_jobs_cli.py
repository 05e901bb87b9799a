"""`custom-metrics agreement --async` and `custom-metrics job` on the local backend, with a detached runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from custom_metrics.cli import main

METRIC = (
    "def agreement(annotation_1, annotation_2, per_label=False):\n"
    "    return 1.0 if annotation_1['result'] == annotation_2['result'] else 0.0\n"
)


def tasks(count: int) -> list[dict[str, Any]]:
    body = []
    for task_id in range(count):
        annotations = []
        for annotator in range(3):
            choice = "a" if (task_id + annotator) % 3 else "b"
            region = {"from_name": "s", "to_name": "t", "type": "choices", "value": {"choices": [choice]}}
            annotations.append({"id": task_id * 3 + annotator, "completed_by": annotator + 1, "result": [region]})
        body.append({"id": task_id, "annotations": annotations})
    return body


def cli(state_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--state-dir", str(state_dir), "--workers", "1", *args], catch_exceptions=False)


def test_jobs_cli_async_then_wait_matches_agreement(state_dir: Path, tmp_path: Path) -> None:
    metric = tmp_path / "metric.py"
    metric.write_text(METRIC)
    export = tmp_path / "tasks.json"
    export.write_text(json.dumps(tasks(40)))
    assert cli(state_dir, "deploy", "p", str(metric)).exit_code == 0

    started = cli(state_dir, "agreement", "p", str(export), "--per-label", "--async")
    job_id = started.stdout.strip()
    waited = cli(state_dir, "job", job_id, "--wait", "--timeout", "60", "--format", "json")
    status = cli(state_dir, "job", job_id)
    direct = cli(state_dir, "agreement", "p", str(export), "--per-label", "--format", "json")

    job_result = json.loads(waited.stdout)
    direct_result = json.loads(direct.stdout)
    assert started.exit_code == 0, started.output
    assert len(job_id) == 32
    assert waited.exit_code == 0, waited.output
    assert job_result.pop("request_id") != direct_result.pop("request_id")
    assert job_result == direct_result
    assert "agreement" in status.stdout


def test_jobs_cli_unknown_job_fails(state_dir: Path) -> None:
    result = cli(state_dir, "job", "0" * 32)

    assert result.exit_code == 1
    assert "no agreement job" in result.output


def test_jobs_cli_async_missing_metric_fails(state_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "tasks.json"
    export.write_text(json.dumps(tasks(2)))

    result = cli(state_dir, "agreement", "absent", str(export), "--async")

    assert result.exit_code == 1
    assert "custom-metric-absent" in result.output
