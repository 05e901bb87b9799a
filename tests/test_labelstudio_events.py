"""Webhook payloads captured from Label Studio 1.23.2, turned into sync plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.labelstudio.events import plan_event

WEBHOOKS = Path(__file__).parent / "data" / "webhooks"


def body(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text())["body"]
    return sample


def test_plan_annotation_created_rescores_its_task() -> None:
    plan = plan_event(body("ANNOTATION_CREATED"))
    assert plan.rescore_tasks == {1}
    assert plan.ls_project == 1
    assert not plan.reconcile


def test_plan_annotation_updated_rescores_its_task() -> None:
    plan = plan_event(body("ANNOTATION_UPDATED"))
    assert plan.rescore_tasks == {1}


def test_plan_skipped_annotation_still_rescores() -> None:
    plan = plan_event(body("ANNOTATION_CREATED__skipped"))
    assert len(plan.rescore_tasks) == 1


def test_plan_annotations_created_list_rescores_each_task() -> None:
    sample = body("ANNOTATIONS_CREATED")
    expected = {item["task"] for item in sample["annotation"]}
    assert plan_event(sample).rescore_tasks == expected


def test_plan_annotations_deleted_lists_annotation_ids() -> None:
    plan = plan_event(body("ANNOTATIONS_DELETED__dm_bulk_action"))
    assert plan.deleted_annotations == [9, 10]
    assert plan.rescore_tasks == set()
    assert not plan.reconcile


def test_plan_tasks_deleted_lists_task_ids() -> None:
    plan = plan_event(body("TASKS_DELETED"))
    assert plan.deleted_tasks == [7]


def test_plan_import_with_inline_annotations_rescores_annotated_tasks() -> None:
    sample = body("TASKS_CREATED__import_with_inline_annotations")
    annotated = {task["id"] for task in sample["tasks"] if task["total_annotations"] > 0}
    assert annotated
    assert plan_event(sample).rescore_tasks == annotated


def test_plan_tasks_created_without_annotations_is_empty() -> None:
    assert plan_event(body("TASKS_CREATED")).empty


@pytest.mark.parametrize("name", ["ANNOTATION_CREATED__send_payload_false", "ANNOTATIONS_DELETED__send_payload_false"])
def test_plan_without_payload_asks_for_reconcile(name: str) -> None:
    assert plan_event(body(name)).reconcile


def test_plan_project_updated_is_empty() -> None:
    assert plan_event(body("PROJECT_UPDATED")).empty


def test_plan_ignores_boolean_and_text_ids() -> None:
    plan = plan_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": True}, {"id": "x"}, {"id": "12"}]})
    assert plan.deleted_annotations == [12]
