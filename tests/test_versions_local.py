"""Versions, the trial before `live` moves, and rollback on the local backend with real worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.deploy_trial import TrialFailedError
from custom_metrics.errors import FunctionNotFoundError, ServiceError
from custom_metrics.service import MetricService

NAME = "custom-metric-sentiment"
FULL = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
HALF = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"
BROKEN = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1 / 0\n"
# Scores the built-in trial pairs but fails on any annotation made by "carol".
FAILS_ON_CAROL = (
    "def agreement(annotation_1, annotation_2, per_label=False):\n"
    "    if 'carol' in (annotation_1.get('completed_by'), annotation_2.get('completed_by')):\n"
    "        raise ValueError('cannot score carol')\n"
    "    return 1.0\n"
)


def _task(task_id: int, *annotators: str) -> dict[str, Any]:
    choice = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
    annotations = [
        {"id": task_id * 10 + index, "completed_by": by, "result": [choice]} for index, by in enumerate(annotators)
    ]
    return {"id": task_id, "data": {"text": "good"}, "annotations": annotations}


TASKS = [_task(1, "alice", "bob"), _task(2, "alice", "carol")]


@pytest.fixture
def service(state_dir: Path) -> Iterator[MetricService]:
    metric_service = MetricService(LocalBackend(state_dir, workers=1))
    yield metric_service
    metric_service.close()


def test_deploy_first_version_goes_live_after_trial(service: MetricService) -> None:
    result = service.put_metric("sentiment", code=FULL)

    assert result["result"] == "created"
    assert result["function"]["version"] == "1"
    assert result["trial"]["outcome"] == "passed"
    assert result["trial"]["source"] == "builtin"
    assert "passed its trial" in result["message"]


def test_deploy_failed_trial_keeps_previous_version(service: MetricService) -> None:
    first = service.put_metric("sentiment", code=FULL)

    with pytest.raises(TrialFailedError) as raised:
        service.put_metric("sentiment", code=BROKEN)
    scored = service.score("sentiment", TASKS)

    body = raised.value.to_body()
    assert raised.value.status_code == 422
    assert body["version"] == 2
    assert body["live_version"] == 1
    assert body["trial"]["errors"] == len(body["trial"]["pairs"])
    assert all("ZeroDivisionError" in line for line in body["errors"])
    assert "live stays at version 1" in body["message"]
    assert scored["function"]["version"] == 1
    assert scored["function"]["code_sha256"] == first["function"]["code_sha256"]
    assert [pair["score"] for pair in scored["pairs"]] == [1.0, 1.0]


def test_deploy_failed_first_trial_leaves_nothing_live(service: MetricService) -> None:
    with pytest.raises(TrialFailedError) as raised:
        service.put_metric("sentiment", code=BROKEN)

    assert "no version is live yet" in raised.value.message
    with pytest.raises(FunctionNotFoundError, match="no live version"):
        service.score("sentiment", TASKS)


def test_deploy_force_skips_trial(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    result = service.put_metric("sentiment", code=BROKEN, force=True)
    scored = service.score("sentiment", TASKS)

    assert result["trial"] == {"version": 2, "outcome": "skipped", "reason": "force"}
    assert "without a trial" in result["message"]
    assert result["function"]["version"] == "2"
    assert scored["errors"] == 2


def test_deploy_unchanged_publishes_no_version(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    again = service.put_metric("sentiment", code=FULL)

    assert again["result"] == "unchanged"
    assert again["trial"] is None
    assert [entry["version"] for entry in service.versions("sentiment")["versions"]] == [1]


def test_deploy_new_memory_publishes_version(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    result = service.put_metric("sentiment", code=FULL, memory_size=512)

    assert result["function"]["version"] == "2"
    assert result["function"]["memory_size"] == 512


def test_deploy_tags_only_keeps_version(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    result = service.put_metric("sentiment", code=FULL, tags={"team": "qa"})

    assert result["result"] == "updated"
    assert result["trial"] is None
    assert result["function"]["version"] == "1"
    assert result["function"]["tags"]["team"] == "qa"


def test_trial_uses_request_tasks(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    with pytest.raises(TrialFailedError) as raised:
        service.put_metric("sentiment", code=FAILS_ON_CAROL, trial_tasks=TASKS)

    trial = raised.value.details["trial"]
    assert trial["source"] == "request"
    assert trial["errors"] == 1
    assert raised.value.details["errors"] == [
        "task 2: alice vs carol: ValueError: cannot score carol (metric.py, line 3)"
    ]


def test_trial_uses_recently_scored_tasks(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    service.score("sentiment", TASKS)

    with pytest.raises(TrialFailedError) as raised:
        service.put_metric("sentiment", code=FAILS_ON_CAROL)

    assert raised.value.details["trial"]["source"] == "recent_tasks"


def test_trial_sample_leaves_out_tasks_with_errors(service: MetricService, state_dir: Path) -> None:
    service.put_metric("sentiment", code=FAILS_ON_CAROL, force=True)

    service.score("sentiment", TASKS)

    sample = json.loads((state_dir / "functions" / NAME / "trial_tasks.json").read_text())
    assert [task["id"] for task in sample["tasks"]] == [1]
    assert sample["pair_mode"] == "annotations"


def test_trial_invalid_tasks_rejected_before_deploy(service: MetricService) -> None:
    with pytest.raises(Exception, match="expected a Label Studio JSON export"):
        service.put_metric("sentiment", code=FULL, trial_tasks="not tasks")

    assert service.list_metrics()["functions"] == []


def test_versions_lists_trial_outcomes(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    with pytest.raises(TrialFailedError):
        service.put_metric("sentiment", code=BROKEN)
    service.put_metric("sentiment", code=HALF, force=True)

    listed = service.versions("sentiment")

    assert listed["live_version"] == 3
    assert [(entry["version"], entry["trial"], entry["live"]) for entry in listed["versions"]] == [
        (1, "passed", False),
        (2, "failed", False),
        (3, "skipped", True),
    ]
    assert all(entry["created"] for entry in listed["versions"])


def test_rollback_next_run_uses_rolled_back_code(service: MetricService) -> None:
    first = service.put_metric("sentiment", code=FULL)
    second = service.put_metric("sentiment", code=HALF)

    rolled = service.rollback("sentiment", 1)
    scored = service.score("sentiment", TASKS)

    assert second["function"]["version"] == "2"
    assert rolled["previous_version"] == 2
    assert rolled["function"]["version"] == "1"
    assert scored["function"]["code_sha256"] == first["function"]["code_sha256"]
    assert scored["function"]["version"] == 1
    assert scored["agreement"] == 1.0


def test_redeploy_after_rollback_publishes_no_new_version(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    service.put_metric("sentiment", code=HALF)
    service.rollback("sentiment", 1)

    result = service.put_metric("sentiment", code=HALF)

    assert result["function"]["version"] == "2"
    assert len(service.versions("sentiment")["versions"]) == 2


def test_rollback_unknown_version_is_not_found(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)

    with pytest.raises(FunctionNotFoundError, match="has no version 7"):
        service.rollback("sentiment", 7)


def test_get_shows_live_source(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    service.put_metric("sentiment", code=HALF)
    service.rollback("sentiment", 1)

    function = service.get_metric("sentiment")["function"]

    assert function["source"] == FULL
    assert function["version"] == "1"


def test_unversioned_function_json_reads_as_version_one(service: MetricService, state_dir: Path) -> None:
    deployed = service.put_metric("sentiment", code=FULL)
    path = state_dir / "functions" / NAME / "function.json"
    metadata = json.loads(path.read_text())
    entry = metadata["versions"][0]
    older = {key: value for key, value in metadata.items() if key not in ("versions", "live")}
    older.update({key: entry[key] for key in ("code_sha256", "package", "code_dir", "timeout", "memory_size")})
    path.write_text(json.dumps(older))

    scored = service.score("sentiment", TASKS)

    assert scored["function"]["version"] == 1
    assert scored["function"]["code_sha256"] == deployed["function"]["code_sha256"]


def test_trial_fails_on_broken_per_label_branch(tmp_path: Path) -> None:
    broken = (
        "def agreement(a, b, per_label=False):\n"
        "    if per_label:\n"
        "        return {'label': float('nan')}\n"
        "    return 1.0\n"
    )
    service = MetricService(LocalBackend(tmp_path / "state", workers=1))
    try:
        with pytest.raises(ServiceError) as raised:
            service.put_metric("p1", code=broken)
    finally:
        service.close()
    assert raised.value.status_code == 422
    assert "per-label breakdown" in raised.value.message
