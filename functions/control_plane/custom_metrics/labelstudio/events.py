"""The work that a Label Studio webhook payload calls for, decided without any I/O.

Facts about the payloads of Label Studio 1.23.2 that shape these rules:
- `ANNOTATION_CREATED` and `ANNOTATION_UPDATED` carry one annotation with its `task` id.
  `ANNOTATIONS_CREATED` carries a list under the same singular key `annotation`.
- `ANNOTATIONS_DELETED` and `TASKS_DELETED` carry ids only, with no task id for annotations.
- Tasks imported with inline annotations fire only `TASKS_CREATED`, whose tasks show `total_annotations`.
- A webhook made with `send_payload: false` sends only `{"action": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
ANNOTATIONS_DELETED = "ANNOTATIONS_DELETED"
TASKS_CREATED = "TASKS_CREATED"
TASKS_DELETED = "TASKS_DELETED"
HANDLED_ACTIONS = ANNOTATION_ACTIONS | {ANNOTATIONS_DELETED, TASKS_CREATED, TASKS_DELETED}


@dataclass
class EventPlan:
    """The work one webhook event calls for."""

    action: str
    ls_project: int | None = None
    rescore_tasks: set[int] = field(default_factory=set)
    deleted_annotations: list[int] = field(default_factory=list)
    deleted_tasks: list[int] = field(default_factory=list)
    # Set when the payload lacks the ids needed, so only a full reconcile can bring scores up to date.
    reconcile: bool = False

    @property
    def empty(self) -> bool:
        return not (self.rescore_tasks or self.deleted_annotations or self.deleted_tasks or self.reconcile)


def plan_event(body: dict[str, Any]) -> EventPlan:
    """Read the action and the ids that matter from a webhook body; ignore everything else in it."""
    action = str(body.get("action", ""))
    plan = EventPlan(action=action, ls_project=_project_id(body))
    if action not in HANDLED_ACTIONS:
        return plan
    if action in ANNOTATION_ACTIONS:
        annotations = _as_list(body.get("annotation"))
        plan.rescore_tasks = {task for task in (_task_of(item) for item in annotations) if task is not None}
        tasks = _as_list(body.get("task"))
        plan.rescore_tasks |= {task for task in (_int(item.get("id")) for item in tasks) if task is not None}
    elif action == ANNOTATIONS_DELETED:
        plan.deleted_annotations = _ids(body.get("annotations"))
    elif action == TASKS_CREATED:
        created = _as_list(body.get("tasks"))
        plan.rescore_tasks = {
            task_id
            for task_id, task in ((_int(item.get("id")), item) for item in created)
            if task_id is not None and (_int(task.get("total_annotations")) or 0) > 0
        }
        if "tasks" not in body:
            plan.reconcile = True
        return plan
    elif action == TASKS_DELETED:
        plan.deleted_tasks = _ids(body.get("tasks"))
        return plan
    if not plan.rescore_tasks and not plan.deleted_annotations:
        plan.reconcile = True
    return plan


def _project_id(body: dict[str, Any]) -> int | None:
    project = body.get("project")
    if isinstance(project, dict):
        return _int(project.get("id"))
    return _int(project)


def _task_of(annotation: dict[str, Any]) -> int | None:
    task = annotation.get("task")
    if isinstance(task, dict):
        return _int(task.get("id"))
    return _int(task)


def _ids(value: Any) -> list[int]:
    return [item_id for item_id in (_int(item.get("id")) for item in _as_list(value)) if item_id is not None]


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
