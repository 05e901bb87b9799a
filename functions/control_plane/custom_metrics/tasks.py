"""Label Studio exports: tasks, their annotations and predictions, and the pairs to score.

An export is a JSON list of tasks (a single task object is accepted too). Each task has
`annotations` (or `completions`, the pre-1.0 name) and optional `predictions`. Cancelled
annotations (`was_cancelled: true`) are left out of every pair; an annotation with an empty
`result` is still compared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from custom_metrics.errors import InvalidInputError

PAIR_MODES = ("annotations", "predictions", "all", "ground_truth")
KIND_ANNOTATION = "annotation"
KIND_PREDICTION = "prediction"


@dataclass(frozen=True)
class Item:
    """One annotation or prediction, with the name it is reported under (`by`)."""

    kind: str
    id: Any
    by: str
    body: dict[str, Any]
    ground_truth: bool = False

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "by": self.by}


@dataclass
class Task:
    key: Any
    index: int
    annotations: list[Item] = field(default_factory=list)
    predictions: list[Item] = field(default_factory=list)
    cancelled: int = 0
    # What export-level warnings need to know of a task, kept so batch jobs can carry it along.
    has_id: bool = True
    has_items: bool = True
    ground_truths: int = 0

    def summary(self) -> dict[str, Any]:
        return {"has_id": self.has_id, "has_items": self.has_items, "ground_truths": self.ground_truths}


@dataclass(frozen=True)
class Pair:
    id: str
    task: Task
    first: Item
    second: Item

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "annotation_1": self.first.body, "annotation_2": self.second.body}

    def controls(self) -> list[str]:
        """Name the controls (`from_name`) that either side has results for, in sorted order."""
        return sorted(_control_names(self.first.body) | _control_names(self.second.body))

    def control_payload(self, control: str) -> dict[str, Any]:
        """Build the payload of this pair with both annotations restricted to one control's results."""
        return {
            "id": control_pair_id(self.id, control),
            "annotation_1": _restricted(self.first.body, control),
            "annotation_2": _restricted(self.second.body, control),
        }


def control_pair_id(pair_id: str, control: str) -> str:
    return f"{pair_id}#{control}"


def _control_names(body: dict[str, Any]) -> set[str]:
    return {
        region["from_name"]
        for region in body["result"]
        if isinstance(region, dict) and isinstance(region.get("from_name"), str)
    }


def _restricted(body: dict[str, Any], control: str) -> dict[str, Any]:
    # Relations carry no from_name and point at regions of other controls, so they are left out.
    regions = [region for region in body["result"] if isinstance(region, dict) and region.get("from_name") == control]
    return {**body, "result": regions}


@dataclass
class Export:
    tasks: list[Task]
    warnings: list[str] = field(default_factory=list)


def parse_export(data: Any) -> Export:
    """Read a parsed Label Studio JSON export into tasks, rejecting shapes that are not tasks."""
    if isinstance(data, dict) and isinstance(data.get("tasks"), list) and "annotations" not in data:
        raise InvalidInputError(
            "expected a Label Studio JSON export (a list of tasks), got an object with a `tasks` list; "
            "pass that list itself"
        )
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InvalidInputError(
            f"expected a Label Studio JSON export (a list of tasks), got a JSON {_json_type(data)}; "
            "export the project as JSON from Label Studio"
        )
    export = Export(tasks=[])
    for index, raw in enumerate(data):
        export.tasks.append(parse_task(raw, index, export.warnings))
    return export


def export_warnings(tasks: list[Task], mode: str) -> list[str]:
    """Warn about an export that parses but is likely not what the user meant to score in `mode`."""
    warnings = []
    if tasks and not any(task.has_items for task in tasks):
        warnings.append(
            "no task has `annotations` or `predictions`; is this a Label Studio JSON export "
            "(not JSON-MIN or CSV)? Export the project as JSON"
        )
    missing = sum(1 for task in tasks if not task.has_id)
    if missing:
        warnings.append(f"{missing} task(s) have no `id`; they are named by their position in the export")
    seen: dict[Any, int] = {}
    for task in tasks:
        if task.has_id and isinstance(task.key, str | int):
            seen[task.key] = seen.get(task.key, 0) + 1
    repeated = sorted(str(key) for key, count in seen.items() if count > 1)
    if repeated:
        listed = ", ".join(repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        warnings.append(f"task ids repeat ({listed}); each copy is scored on its own, see `task_index`")
    if mode == "ground_truth":
        if tasks and not any(task.ground_truths for task in tasks):
            warnings.append("no task has a `ground_truth: true` annotation, so `ground_truth` mode scores no pair")
        several = sum(1 for task in tasks if task.ground_truths > 1)
        if several:
            warnings.append(f"{several} task(s) have several ground-truth annotations; the first one is the reference")
    return warnings


def parse_task(raw: Any, index: int, warnings: list[str]) -> Task:
    """Read the task at position `index` of an export; batch jobs parse tasks one at a time with it."""
    if not isinstance(raw, dict):
        raise InvalidInputError(
            f"task at position {index} is a JSON {_json_type(raw)}, expected an object with `annotations`"
        )
    key = raw.get("id", index)
    has_items = any(name in raw for name in ("annotations", "completions", "predictions"))
    task = Task(key=key, index=index, has_id="id" in raw, has_items=has_items)
    annotations = raw.get("annotations", raw.get("completions", []))
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        raise InvalidInputError(f"task {key!r}: `annotations` is a JSON {_json_type(annotations)}, expected a list")
    for position, annotation in enumerate(annotations):
        item = _parse_item(annotation, KIND_ANNOTATION, key, position)
        if annotation.get("was_cancelled") is True:
            task.cancelled += 1
            continue
        task.annotations.append(item)

    predictions = raw.get("predictions") or []
    if not isinstance(predictions, list):
        raise InvalidInputError(f"task {key!r}: `predictions` is a JSON {_json_type(predictions)}, expected a list")
    skipped = 0
    for position, prediction in enumerate(predictions):
        if not isinstance(prediction, dict):
            skipped += 1  # An export made without predictions' content lists their ids only.
            continue
        task.predictions.append(_parse_item(prediction, KIND_PREDICTION, key, position))
    if skipped:
        warnings.append(f"task {key!r}: {skipped} prediction(s) are ids without results and were left out")
    task.ground_truths = sum(1 for item in task.annotations if item.ground_truth)
    return task


def _parse_item(raw: Any, kind: str, task_key: Any, position: int) -> Item:
    where = f"task {task_key!r}, {kind} at position {position}"
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where} is a JSON {_json_type(raw)}, expected an object with `result`")
    result = raw.get("result")
    if not isinstance(result, list):
        found = "missing" if result is None else f"a JSON {_json_type(result)}"
        raise InvalidInputError(f"{where}: `result` is {found}, expected a list of regions")
    if any(isinstance(region, list) for region in result):
        # Pre-1.0 aggregated exports nest the regions one list deeper; metrics expect a flat list.
        flat = [inner for region in result for inner in (region if isinstance(region, list) else [region])]
        raw = {**raw, "result": flat}
    item_id = raw.get("id")
    by = _annotator(raw) if kind == KIND_ANNOTATION else _model(raw, item_id, position)
    return Item(kind=kind, id=item_id, by=by, body=raw, ground_truth=raw.get("ground_truth") is True)


def _annotator(raw: dict[str, Any]) -> str:
    completed_by = raw.get("completed_by")
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and email:
            return email
        completed_by = completed_by.get("id")
    if completed_by is None or isinstance(completed_by, bool):
        return "unknown annotator"
    return str(completed_by)


def _model(raw: dict[str, Any], item_id: Any, position: int) -> str:
    version = raw.get("model_version")
    if isinstance(version, str) and version:
        return version
    return f"prediction {item_id if item_id is not None else position}"


def build_pairs(export: Export, mode: str = "annotations") -> list[Pair]:
    """List the pairs to score for `mode`, in task order."""
    if mode not in PAIR_MODES:
        raise InvalidInputError(f"unknown pair mode {mode!r}; use one of {', '.join(PAIR_MODES)}")
    pairs: list[Pair] = []
    for task in export.tasks:
        pairs.extend(_task_pairs(task, mode))
    return pairs


def _task_pairs(task: Task, mode: str) -> list[Pair]:
    combos: list[tuple[Item, Item]] = []
    if mode in ("annotations", "all"):
        combos.extend(itertools.combinations(task.annotations, 2))
    if mode in ("predictions", "all"):
        combos.extend(itertools.product(task.annotations, task.predictions))
    if mode == "ground_truth":
        reference = next((item for item in task.annotations if item.ground_truth), None)
        if reference is not None:
            combos.extend((item, reference) for item in task.annotations if item is not reference)
    return [
        Pair(id=f"{task.index}:{number}", task=task, first=first, second=second)
        for number, (first, second) in enumerate(combos)
    ]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
