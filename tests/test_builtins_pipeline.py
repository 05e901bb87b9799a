"""Every built-in deployed and run through the real pipeline: workers, runtime, aggregation."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics import builtins
from custom_metrics.backends.local import LocalBackend
from custom_metrics.service import MetricService

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"
CLI = Path(sys.executable).parent / "custom-metrics"
# A built-in named for a labeled tool also scores the unlabeled tool whose labels sit in a
# separate `labels` result, as Label Studio's image tools export them.
UNLABELED = {
    "rectanglelabels": "rectangle",
    "polygonlabels": "polygon",
    "ellipselabels": "ellipse",
    "keypointlabels": "keypoint",
    "brushlabels": "brush",
}


def result_types(task: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for item in [*(task.get("annotations") or []), *(task.get("predictions") or [])]:
        if isinstance(item, dict):
            found.update(region.get("type") for region in item.get("result") or [] if isinstance(region, dict))
    return found


def corpus_tasks(name: str) -> list[dict[str, Any]]:
    """Collect the corpus tasks that carry results of the built-in's type."""
    wanted = {name, UNLABELED.get(name, name)}
    tasks = []
    for path in sorted(CORPUS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "annotation" in data and "task" in data:
            # A webhook payload: the task arrives without its annotation.
            data = {**data["task"], "annotations": [data["annotation"]]}
        for task in data if isinstance(data, list) else [data]:
            if isinstance(task, dict) and "completions" not in task and wanted & result_types(task):
                tasks.append(task)
    return tasks


def rating_tasks() -> list[dict[str, Any]]:
    """Build rating tasks by hand: no public export in the corpus has rating results."""

    def rated(item_id: int, user: int, stars: int) -> dict[str, Any]:
        region = {
            "id": f"r{item_id}",
            "from_name": "stars",
            "to_name": "text",
            "type": "rating",
            "value": {"rating": stars},
        }
        return {"id": item_id, "completed_by": user, "result": [region]}

    return [{"id": 1, "annotations": [rated(1, 1, 4), rated(2, 2, 5), rated(3, 3, 4)]}]


def tasks_for(name: str) -> list[dict[str, Any]]:
    return rating_tasks() if name == "rating" else [with_a_pair(task) for task in corpus_tasks(name)]


def with_a_pair(task: dict[str, Any]) -> dict[str, Any]:
    """Give a task with a single annotation or prediction a copy of it, so it yields one pair."""
    task = copy.deepcopy(task)
    annotations = [item for item in task.get("annotations") or [] if not item.get("was_cancelled")]
    predictions = [item for item in task.get("predictions") or [] if isinstance(item, dict)]
    if (not annotations and not predictions) or (annotations and predictions) or len(annotations) >= 2:
        return task
    source = (annotations or predictions)[0]
    duplicate = {**copy.deepcopy(source), "id": 888_888, "completed_by": 888}
    task["annotations"] = [*(task.get("annotations") or []), duplicate]
    if not annotations:
        task["annotations"].append({**copy.deepcopy(source), "id": 888_889, "completed_by": 889})
    return task


def with_cancelled_annotation(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy the tasks and add to each a cancelled annotation that disagrees with everything."""
    changed = copy.deepcopy(tasks)
    for task in changed:
        task.setdefault("annotations", []).append(
            {"id": 999_999, "completed_by": 999, "was_cancelled": True, "result": []}
        )
    return changed


def scores(result: dict[str, Any]) -> list[Any]:
    return [(pair["first"]["id"], pair["second"]["id"], pair["score"], pair["error"]) for pair in result["pairs"]]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricService]:
    service = MetricService(LocalBackend(tmp_path_factory.mktemp("state"), workers=2))
    yield service
    service.close()


def test_every_builtin_has_test_data() -> None:
    missing = [name for name in builtins.names() if not tasks_for(name)]
    assert missing == []


@pytest.mark.parametrize("name", builtins.names())
def test_builtin_scores_real_data_without_errors(service: MetricService, name: str) -> None:
    service.put_metric(f"b-{name}", builtin=name)
    result = service.score(f"b-{name}", tasks_for(name), pairs="all")
    assert result["pairs"], f"no pairs for {name}"
    assert result["errors"] == 0, [pair["error"] for pair in result["pairs"] if pair["error"]][:3]
    assert all(0.0 <= pair["score"] <= 1.0 for pair in result["pairs"])


@pytest.mark.parametrize("name", builtins.names())
def test_builtin_ignores_cancelled_annotations(service: MetricService, name: str) -> None:
    service.put_metric(f"b-{name}", builtin=name)
    plain = service.score(f"b-{name}", tasks_for(name), pairs="all")
    cancelled = service.score(f"b-{name}", with_cancelled_annotation(tasks_for(name)), pairs="all")
    assert scores(cancelled) == scores(plain)
    assert cancelled["agreement"] == plain["agreement"]


@pytest.mark.parametrize("name", builtins.names())
def test_builtin_init_output_scores_the_same(service: MetricService, name: str) -> None:
    built = service.put_metric(f"b-{name}", builtin=name)
    edited = service.put_metric(f"i-{name}", code=builtins.render(name))
    tasks = tasks_for(name)
    assert scores(service.score(f"i-{name}", tasks, pairs="all")) == scores(
        service.score(f"b-{name}", tasks, pairs="all")
    )
    assert edited["function"]["code_sha256"] == built["function"]["code_sha256"]


def test_cli_init_output_deploys_as_builtin(tmp_path: Path) -> None:
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(tmp_path / "state")}

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *arguments], capture_output=True, text=True, env=environment, timeout=120, check=True
        )

    metric = tmp_path / "metric.py"
    metric.write_text(cli("init", "--builtin", "choices", "--option", 'selection_match="exact"').stdout)
    from_file = cli("deploy", "edited", str(metric)).stdout
    from_builtin = cli("deploy", "builtin", "--builtin", "choices", "--option", 'selection_match="exact"').stdout
    assert from_file.split("SHA-256 ")[1] == from_builtin.split("SHA-256 ")[1]
