"""Aggregation of per-pair results into task, annotator-pair, label and project agreement.

The input is plain JSON-ready data (pair records and the task keys) so that every caller shares
this one function: the synchronous API route, the CLI, and batch jobs that collect pair records
from elsewhere.

Rules:
- A task's agreement is the mean of its scored pairs. A task with no scored pair is null, and it
  is left out of every mean.
- The annotator matrix contains, for each unordered pair of annotators (or models), the mean score
  over their pairs.
- A label's agreement is the mean of that label's value over the pairs whose per-label result
  has it.
- The project agreement is the mean of the non-null task agreements.
- A control's agreement is the mean over pairs of the metric's score on the two annotations
  restricted to that control's results (computed only when per-control results are requested).
- Pairs with an error count in `errors` and stay out of every mean.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Any

from custom_metrics.tasks import Pair


def pair_record(
    pair: Pair, result: dict[str, Any] | None, control_results: dict[str, dict[str, Any] | None] | None = None
) -> dict[str, Any]:
    """Merge a pair with the runtime's result for it (and, if asked, per control) into one output record."""
    result = result or _NOT_RUN
    record = {
        "task": pair.task.key,
        "task_index": pair.task.index,
        "first": pair.first.describe(),
        "second": pair.second.describe(),
        "score": result.get("score"),
        "per_label": result.get("per_label"),
        "error": result.get("error"),
        # The per_label=True call failed, so the score is kept and per_label is None.
        "per_label_error": result.get("per_label_error"),
    }
    if control_results is not None:
        record["per_control"] = {
            control: {"score": (outcome or _NOT_RUN).get("score"), "error": (outcome or _NOT_RUN).get("error")}
            for control, outcome in control_results.items()
        }
    return record


_NOT_RUN: dict[str, Any] = {
    "score": None,
    "per_label": None,
    "error": {"type": "NotRun", "message": "pair was not scored"},
}


def aggregate(task_keys: list[Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Compute the task list, annotator matrix, label means and project agreement.

    `task_keys` lists every task's id in export order. Records find their task by `task_index`, its
    position in the export, because ids may repeat or be missing.
    """
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_task[record["task_index"]].append(record)

    tasks = [_task_summary(key, index, by_task.get(index, [])) for index, key in enumerate(task_keys)]
    task_scores = [task["agreement"] for task in tasks if task["agreement"] is not None]
    return {
        "agreement": fmean(task_scores) if task_scores else None,
        "tasks": tasks,
        "pairs": records,
        "annotators": _annotator_matrix(records),
        "labels": _label_means(records),
        "controls": _control_means(records),
        "errors": sum(1 for record in records if record["error"] is not None),
    }


def _task_summary(key: Any, index: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [record["score"] for record in records if record["error"] is None and record["score"] is not None]
    return {
        "task": key,
        "task_index": index,
        "agreement": fmean(scores) if scores else None,
        "pairs": len(records),
        "errors": sum(1 for record in records if record["error"] is not None),
    }


def _annotator_matrix(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], list[float]] = {}
    orientation: dict[tuple[str, str], tuple[str, str]] = {}
    for record in records:
        if record["error"] is not None or record["score"] is None:
            continue
        first, second = record["first"]["by"], record["second"]["by"]
        key = (first, second) if first <= second else (second, first)
        orientation.setdefault(key, (first, second))
        cells.setdefault(key, []).append(record["score"])
    return [
        {"first": orientation[key][0], "second": orientation[key][1], "agreement": fmean(scores), "pairs": len(scores)}
        for key, scores in sorted(cells.items())
    ]


def _label_means(records: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        per_label = record.get("per_label")
        if record["error"] is not None or not per_label:
            continue
        for label, score in per_label.items():
            values[label].append(score)
    return {label: fmean(scores) for label, scores in sorted(values.items())}


def _control_means(records: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for control, outcome in (record.get("per_control") or {}).items():
            if outcome["error"] is None and outcome["score"] is not None:
                values[control].append(outcome["score"])
    return {control: fmean(scores) for control, scores in sorted(values.items())}
