"""The versions and rollback routes (driven with the files in events/), the CLI commands, and the built-in trial set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builtin_loading import load_builtin

from custom_metrics import builtins
from custom_metrics.api.app import build_resolver
from custom_metrics.backends.local import LocalBackend
from custom_metrics.deploy_trial import builtin_tasks, result_types_named
from custom_metrics.service import MetricService

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
CLI = Path(sys.executable).parent / "custom-metrics"
FULL = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
HALF = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"
BROKEN = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1 / 0\n"


class LambdaContext:
    function_name = "custom-metrics-ControlPlaneFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:custom-metrics-ControlPlaneFunction"
    aws_request_id = "6f1c1c2e-0000-4000-8000-000000000002"


def _event(name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    if body is not None:
        event["body"] = json.dumps(body)
    return event


@pytest.fixture
def resolve(state_dir: Path) -> Iterator[Any]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    resolver = build_resolver(lambda: service)

    def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = resolver.resolve(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    yield call
    service.close()


def _put(code: str, **extra: Any) -> dict[str, Any]:
    return _event("put_metric", {"code": code, **extra})


def test_api_put_failed_trial_answers_422(resolve: Any) -> None:
    resolve(_put(FULL))

    status, body = resolve(_put(BROKEN))

    assert status == 422
    assert body["live_version"] == 1
    assert body["errors"]
    assert body["trial"]["outcome"] == "failed"


def test_api_put_force_says_trial_skipped(resolve: Any) -> None:
    resolve(_put(FULL))

    status, body = resolve(_put(BROKEN, force=True))

    assert status == 200
    assert body["trial"]["outcome"] == "skipped"


def test_api_versions_event_lists_versions(resolve: Any) -> None:
    resolve(_put(FULL))
    resolve(_put(HALF))

    status, body = resolve(_event("metric_versions"))

    assert status == 200, body
    assert body["live_version"] == 2
    assert [entry["version"] for entry in body["versions"]] == [1, 2]


def test_api_rollback_event_moves_live(resolve: Any) -> None:
    resolve(_put(FULL))
    resolve(_put(HALF))

    status, body = resolve(_event("rollback_metric"))

    assert status == 200, body
    assert body["function"]["version"] == "1"
    assert body["previous_version"] == 2


def test_api_rollback_rejects_version_zero(resolve: Any) -> None:
    resolve(_put(FULL))

    status, body = resolve(_event("rollback_metric", {"version": 0}))

    assert status == 400
    assert "version" in body["message"]


def test_api_put_rejects_non_boolean_force(resolve: Any) -> None:
    status, body = resolve(_put(FULL, force="yes"))

    assert status == 400
    assert "force" in body["message"]


def _run_cli(state_dir: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [str(CLI), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def test_cli_trial_versions_and_rollback(state_dir: Path, tmp_path: Path) -> None:
    full, broken, tasks = tmp_path / "full.py", tmp_path / "broken.py", tmp_path / "tasks.json"
    full.write_text(FULL)
    broken.write_text(BROKEN)
    annotations = [{"id": number, "completed_by": "a", "result": []} for number in (1, 2)]
    tasks.write_text(json.dumps([{"id": 7, "annotations": annotations}]))

    deployed = _run_cli(state_dir, "deploy", "p1", full)
    failed = _run_cli(state_dir, "deploy", "p1", broken, "--trial", tasks)
    forced = _run_cli(state_dir, "deploy", "p1", broken, "--force")
    rolled = _run_cli(state_dir, "rollback", "p1", "1")
    listed = _run_cli(state_dir, "versions", "p1", "--format", "json")

    assert deployed.returncode == 0, deployed.stderr
    assert failed.returncode == 1
    assert "failed its trial" in failed.stderr
    assert "task 7" in failed.stderr
    assert "without a trial" in forced.stdout
    assert "live moved from version 2 to version 1" in rolled.stdout
    versions = json.loads(listed.stdout)["versions"]
    assert [(entry["version"], entry["trial"], entry["live"]) for entry in versions] == [
        (1, "passed", True),
        (2, "skipped", False),
    ]


@pytest.mark.parametrize("name", builtins.names())
def test_builtin_trial_set_passes_every_builtin(name: str) -> None:
    source = builtins.render(name)
    module = load_builtin(name)

    for task in builtin_tasks(source):
        first, second = task["annotations"]
        score = module.agreement(first, second)
        assert score == 1.0, task["id"]


def test_result_types_named_reads_string_literals() -> None:
    source = "def agreement(a, b, per_label=False):\n    return float(a['type'] == 'choices' == \"rating\")\n"

    assert result_types_named(source) == ["choices", "rating"]


def test_builtin_tasks_always_include_two_empty_annotations() -> None:
    tasks = builtin_tasks(FULL)

    assert [task["id"] for task in tasks] == ["trial-empty"]
    assert [annotation["result"] for annotation in tasks[0]["annotations"]] == [[], []]
