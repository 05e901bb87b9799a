"""Rescore Label Studio tasks with the project's metric and write the scores back.

Three entry points share one scoring path:
- `rescore_tasks`: fetch the tasks' annotations from Label Studio, score, write back (annotation events).
- `handle`: carry out an `EventPlan` from a webhook, deletions included.
- `reconcile`: pull the whole export and rescore every task whose annotations, metric code or stored
  score differ from what its `meta.<key>` records, so that lost webhook deliveries never leave a
  stale score.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from custom_metrics.errors import InvalidInputError, ServiceError
from custom_metrics.labelstudio.client import LabelStudioClient, LabelStudioNotFoundError, TaskSnapshot
from custom_metrics.labelstudio.events import EventPlan
from custom_metrics.labelstudio.store import Connection, ConnectionStorage
from custom_metrics.labelstudio.writeback import TaskScore, WriteOutcome, write_score
from custom_metrics.tasks import build_pairs, parse_export

logger = logging.getLogger(__name__)

# Tasks scored per call of the service during a reconcile, to bound the memory of one request.
RECONCILE_BATCH_TASKS = 500
PREDICTION_MODES = frozenset({"predictions", "all"})


class Scorer(Protocol):
    """The part of MetricService (or of the remote client) that sync needs."""

    def score(self, project: str, tasks: Any, *, pairs: str = ..., prefix: str | None = ...) -> dict[str, Any]: ...

    def get_metric(self, project: str, prefix: str | None = ...) -> dict[str, Any]: ...


@dataclass
class SyncReport:
    """Counts of what a sync run did, for the CLI and the logs."""

    tasks: int = 0
    rescored: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: list[int] = field(default_factory=list)
    removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "rescored": self.rescored,
            "written": self.written,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "removed": self.removed,
        }


def fingerprint(task: dict[str, Any], pair_mode: str) -> str:
    """Hash the ids, `updated_at` and cancel flags of what the task's score depends on."""
    items = [
        ["annotation", item.get("id"), item.get("updated_at"), bool(item.get("was_cancelled"))]
        for item in task.get("annotations") or []
        if isinstance(item, dict)
    ]
    if pair_mode in PREDICTION_MODES:
        items += [
            ["prediction", item.get("id"), item.get("updated_at"), False]
            for item in task.get("predictions") or []
            if isinstance(item, dict)
        ]
    items.sort(key=lambda item: (item[0], str(item[1])))
    text = json.dumps([pair_mode, items], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ProjectSync:
    """Keeps the scores of one connected Label Studio project up to date."""

    def __init__(
        self,
        store: ConnectionStorage,
        connection: Connection,
        service: Scorer,
        *,
        client: LabelStudioClient | None = None,
    ) -> None:
        self.store = store
        self.connection = connection
        self.service = service
        self.client = client or store.client(connection)
        self.annotations = store.annotation_map(connection.project)

    # Webhook events -----------------------------------------------------------------------

    def handle(self, plan: EventPlan) -> SyncReport:
        """Carry out one webhook event's plan."""
        project = self.connection.project
        if plan.ls_project is not None and plan.ls_project != self.connection.ls_project:
            logger.warning(
                "webhook event for another Label Studio project ignored",
                extra={"project": project, "action": plan.action, "ls_project": plan.ls_project},
            )
            return SyncReport()
        report = SyncReport()
        if plan.deleted_tasks:
            self.annotations.remove_tasks(plan.deleted_tasks)
            report.removed = len(plan.deleted_tasks)
        tasks = set(plan.rescore_tasks)
        if plan.deleted_annotations:
            known, unknown = self.annotations.tasks_of(plan.deleted_annotations)
            tasks |= known
            if unknown:
                logger.info(
                    "deleted annotations not in the annotation map; reconciling the project",
                    extra={"project": project, "annotations": unknown},
                )
                plan.reconcile = True
        if plan.reconcile:
            return self.reconcile()
        if tasks:
            report = self.rescore_tasks(sorted(tasks))
        return report

    def rescore_tasks(self, task_ids: Iterable[int]) -> SyncReport:
        """Fetch each task's annotations from Label Studio, score the tasks and write the scores back."""
        report = SyncReport()
        fetched: list[tuple[TaskSnapshot, dict[str, Any]]] = []
        for task_id in task_ids:
            report.tasks += 1
            try:
                fetched.append(self._fetch(task_id))
            except LabelStudioNotFoundError:
                logger.info("task deleted before it was rescored", extra={"task": task_id})
                self.annotations.remove_tasks([task_id])
                report.removed += 1
            except ServiceError as exc:
                logger.error("fetching task failed: %s", exc.message, extra={"task": task_id})
                report.failed.append(task_id)
        self._score_and_write(fetched, report)
        return report

    # Reconcile ----------------------------------------------------------------------------

    def reconcile(self) -> SyncReport:
        """Rescore every task whose stored score no longer matches its annotations or the metric."""
        connection = self.connection
        started = _now()
        code_sha256 = self.service.get_metric(connection.project, connection.prefix)["function"]["code_sha256"]
        export = self.client.export_tasks(connection.ls_project)
        self.annotations.replace(
            {
                annotation["id"]: task["id"]
                for task in export
                for annotation in task.get("annotations") or []
                if isinstance(annotation, dict) and "id" in annotation
            }
        )
        report = SyncReport(tasks=len(export))
        stale = [task for task in export if not self._is_current(task, code_sha256)]
        for start in range(0, len(stale), RECONCILE_BATCH_TASKS):
            batch = stale[start : start + RECONCILE_BATCH_TASKS]
            self._score_and_write([(TaskSnapshot.from_json(task), task) for task in batch], report)
        report.unchanged += len(export) - len(stale)
        self.store.save_sync_state(
            connection.project, {"last_reconciled_at": started, "export_tasks": len(export), **report.to_dict()}
        )
        logger.info("reconciled", extra={"project": connection.project, **report.to_dict()})
        return report

    def _is_current(self, task: dict[str, Any], code_sha256: str) -> bool:
        key = self.connection.score_key
        stored = (task.get("meta") or {}).get(key)
        data = task.get("data") or {}
        if not isinstance(stored, dict):
            # A task never scored needs a score only once it has a pair to compare.
            return key not in data and not _has_pairs(task, self.connection.pair_mode)
        return (
            stored.get("fingerprint") == fingerprint(task, self.connection.pair_mode)
            and stored.get("code_sha256") == code_sha256
            and data.get(key) == stored.get("score")
        )

    # Shared path --------------------------------------------------------------------------

    def _fetch(self, task_id: int) -> tuple[TaskSnapshot, dict[str, Any]]:
        snapshot = self.client.get_task(task_id)
        annotations = self.client.task_annotations(task_id)
        predictions = self.client.task_predictions(task_id) if self.connection.pair_mode in PREDICTION_MODES else []
        self.annotations.set_task(task_id, [item["id"] for item in annotations if "id" in item])
        task = {"id": task_id, "data": snapshot.data, "annotations": annotations, "predictions": predictions}
        return snapshot, task

    def _score_and_write(self, fetched: list[tuple[TaskSnapshot, dict[str, Any]]], report: SyncReport) -> None:
        if not fetched:
            return
        scores = self._score([task for _, task in fetched])
        report.rescored += len(fetched)
        key = self.connection.score_key
        for snapshot, _task in fetched:
            score = scores[snapshot.id]
            if _nothing_to_write(snapshot, key, score):
                report.skipped += 1
                continue
            try:
                outcome = write_score(self.client, key, score, snapshot=snapshot)
            except LabelStudioNotFoundError:
                logger.info("task deleted before its score was written", extra={"task": snapshot.id})
                self.annotations.remove_tasks([snapshot.id])
                report.removed += 1
                continue
            except ServiceError as exc:
                logger.error("writing the score failed: %s", exc.message, extra={"task": snapshot.id})
                report.failed.append(snapshot.id)
                continue
            if outcome is WriteOutcome.WRITTEN:
                report.written += 1
            else:
                report.unchanged += 1

    def _score(self, tasks: list[dict[str, Any]]) -> dict[int, TaskScore]:
        connection = self.connection
        result = self.service.score(
            connection.project,
            [_scorable(task) for task in tasks],
            pairs=connection.pair_mode,
            prefix=connection.prefix,
        )
        annotators: dict[Any, set[str]] = defaultdict(set)
        for pair in result["pairs"]:
            annotators[pair["task"]].update((pair["first"]["by"], pair["second"]["by"]))
        by_task = {row["task"]: row for row in result["tasks"]}
        scored_at = _now()
        scores: dict[int, TaskScore] = {}
        for task in tasks:
            row = by_task.get(task["id"], {})
            scores[task["id"]] = TaskScore(
                task=task["id"],
                score=row.get("agreement"),
                pairs=int(row.get("pairs", 0)),
                errors=int(row.get("errors", 0)),
                annotators=sorted(annotators[task["id"]]),
                function=result["function"]["name"],
                code_sha256=result["function"]["code_sha256"],
                pair_mode=connection.pair_mode,
                fingerprint=fingerprint(task, connection.pair_mode),
                scored_at=scored_at,
            )
        return scores


def _scorable(task: dict[str, Any]) -> dict[str, Any]:
    annotations = task.get("annotations") or []
    return {"id": task["id"], "annotations": annotations, "predictions": task.get("predictions") or []}


def _nothing_to_write(snapshot: TaskSnapshot, key: str, score: TaskScore) -> bool:
    # A task with nothing to compare and no earlier score is left untouched, so unannotated tasks
    # do not all get a `meta` entry.
    return score.score is None and score.pairs == 0 and key not in snapshot.data and key not in snapshot.meta


def _has_pairs(task: dict[str, Any], pair_mode: str) -> bool:
    try:
        return bool(build_pairs(parse_export([task]), pair_mode))
    except InvalidInputError:
        return True  # Scoring reports the malformed task as an error, which is worth writing.


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
