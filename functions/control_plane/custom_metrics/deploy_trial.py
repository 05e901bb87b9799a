"""The trial that a new version of a metric runs before the `live` alias moves to it.

The trial's tasks come from the first source that yields pairs:

1. the tasks sent with the deploy request (`trial_tasks`), scored in pair mode "all";
2. the sample of recently scored tasks that the backend keeps for the function, in the pair mode
   they were scored with;
3. a built-in set: for the result types that the source names in string literals, one annotation
   scored against a copy of itself, and always two empty annotations scored against each other.

The trial passes only when every pair scores without an error.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from typing import Any

import orjson

from custom_metrics.backends.base import Backend
from custom_metrics.errors import ServiceError
from custom_metrics.tasks import Export, Pair, build_pairs, parse_export

SOURCE_REQUEST = "request"
SOURCE_RECENT_TASKS = "recent_tasks"
SOURCE_BUILTIN = "builtin"
MAX_TRIAL_PAIRS = 200
# The sample of recently scored tasks kept per function: at most this many tasks and bytes.
SAMPLE_MAX_TASKS = 5
SAMPLE_MAX_BYTES = 256 * 1024

_TEXT = "The quick brown fox jumps over the lazy dog."
_IMAGE = {"original_width": 200, "original_height": 100, "image_rotation": 0}

# One valid region value per result type, in Label Studio's export format.
_SAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "choices": {"choices": ["A"]},
    "taxonomy": {"taxonomy": [["A", "B"]]},
    "labels": {"start": 4, "end": 9, "text": "quick", "labels": ["A"]},
    "hypertextlabels": {
        "start": "/p[1]/text()[1]",
        "end": "/p[1]/text()[1]",
        "startOffset": 4,
        "endOffset": 9,
        "globalOffsets": {"start": 4, "end": 9},
        "text": "quick",
        "hypertextlabels": ["A"],
    },
    "paragraphlabels": {
        "start": "0",
        "end": "0",
        "startOffset": 0,
        "endOffset": 5,
        "text": "Hello",
        "paragraphlabels": ["A"],
    },
    "timeserieslabels": {"start": 1, "end": 5, "instant": False, "timeserieslabels": ["A"]},
    "timelinelabels": {"ranges": [{"start": 1, "end": 5}], "timelinelabels": ["A"]},
    "textarea": {"text": [_TEXT]},
    "rating": {"rating": 3},
    "number": {"number": 5},
    "datetime": {"datetime": "2024-01-02T03:04"},
    "pairwise": {"selected": "left"},
    "ranker": {"ranker": {"rank": ["item-1", "item-2"]}},
    "rectanglelabels": {"x": 10, "y": 10, "width": 20, "height": 30, "rotation": 0, "rectanglelabels": ["A"]},
    "polygonlabels": {"points": [[10, 10], [40, 10], [40, 40], [10, 40]], "polygonlabels": ["A"]},
    "ellipselabels": {"x": 50, "y": 50, "radiusX": 10, "radiusY": 5, "rotation": 0, "ellipselabels": ["A"]},
    "keypointlabels": {"x": 20, "y": 20, "width": 1, "keypointlabels": ["A"]},
    "videorectangle": {
        "framesCount": 10,
        "duration": 0.4,
        "sequence": [
            {"frame": 1, "x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "enabled": True, "time": 0.04},
            {"frame": 5, "x": 20, "y": 10, "width": 20, "height": 20, "rotation": 0, "enabled": False, "time": 0.2},
        ],
        "labels": ["A"],
    },
}
_IMAGE_TYPES = {"rectanglelabels", "polygonlabels", "ellipselabels", "keypointlabels"}


class TrialFailedError(ServiceError):
    """A new version scored at least one trial pair with an error, so `live` did not move to it."""

    status_code = 422


def result_types_named(source: str) -> list[str]:
    """List the known result types that appear as string literals in `source`, in sorted order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return sorted(literals & _SAMPLE_VALUES.keys())


def builtin_tasks(source: str) -> list[dict[str, Any]]:
    """Build the built-in trial tasks: one per result type the source names, and one of two empty annotations."""
    tasks = []
    for index, result_type in enumerate(result_types_named(source)):
        region: dict[str, Any] = {
            "id": f"region-{index}",
            "from_name": result_type,
            "to_name": "input",
            "type": result_type,
            "value": copy.deepcopy(_SAMPLE_VALUES[result_type]),
        }
        if result_type in _IMAGE_TYPES:
            region.update(_IMAGE)
        annotations = [_annotation(number, "trial-a", [region]) for number in (1, 2)]
        tasks.append({"id": f"trial-{result_type}", "data": {"text": _TEXT}, "annotations": annotations})
    empty = [_annotation(1, "trial-a", []), _annotation(2, "trial-b", [])]
    tasks.append({"id": "trial-empty", "data": {"text": _TEXT}, "annotations": empty})
    return tasks


def _annotation(number: int, by: str, result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": number, "completed_by": by, "result": copy.deepcopy(result)}


def trial_pairs(
    source: str, request_tasks: Any, recent: Callable[[], dict[str, Any] | None]
) -> tuple[str, Export, list[Pair]]:
    """Pick the trial's tasks as the module docstring describes; return the source's name, the export and its pairs."""
    if request_tasks is not None:
        export = parse_export(request_tasks)
        pairs = build_pairs(export, "all")[:MAX_TRIAL_PAIRS]
        if pairs:
            return SOURCE_REQUEST, export, pairs
    sample = recent()
    if sample is not None:
        export = parse_export(sample.get("tasks", []))
        pairs = build_pairs(export, sample.get("pair_mode", "annotations"))[:MAX_TRIAL_PAIRS]
        if pairs:
            return SOURCE_RECENT_TASKS, export, pairs
    export = parse_export(builtin_tasks(source))
    return SOURCE_BUILTIN, export, build_pairs(export, "annotations")


def recent_sample(data: Any, export: Export, records: list[dict[str, Any]], pair_mode: str) -> dict[str, Any] | None:
    """Pick the last tasks of a scored export whose pairs all scored, to become the next deploy's trial.

    Tasks with a pair error are left out, so the sample contains inputs that the live version scores.
    Returns None when no task qualifies.
    """
    raw_tasks = data if isinstance(data, list) else [data]
    failed = {_key(record["task"]) for record in records if record["error"] is not None}
    scored = {_key(record["task"]) for record in records if record["error"] is None}
    chosen: list[Any] = []
    size = 0
    for task in reversed(export.tasks):
        key = _key(task.key)
        if key in failed or key not in scored:
            continue
        task_bytes = len(orjson.dumps(raw_tasks[task.index]))
        if size + task_bytes > SAMPLE_MAX_BYTES:
            continue
        chosen.append(raw_tasks[task.index])
        size += task_bytes
        if len(chosen) == SAMPLE_MAX_TASKS:
            break
    if not chosen:
        return None
    return {"pair_mode": pair_mode, "tasks": list(reversed(chosen))}


def _key(value: Any) -> str:
    return orjson.dumps(value).decode()


class VersionTarget:
    """A backend seen through one version number, so that the orchestrator's batches run on that version."""

    def __init__(self, backend: Backend, version: str) -> None:
        self._backend = backend
        self._version = version
        self.max_concurrency = backend.max_concurrency
        self.max_batch_pairs = backend.max_batch_pairs
        self.max_batch_bytes = backend.max_batch_bytes

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._backend.invoke(name, payload, self._version)


def describe_error(record: dict[str, Any]) -> str:
    """Write one failed trial pair as a line: task, the two sides, the error type and message.

    The runtime's message already names the line of the metric file where the error was raised.
    """
    sides = f"{record['first']['by']} vs {record['second']['by']}"
    error = record["error"]
    if error is None:
        error = record["per_label_error"]
        return f"task {record['task']}: {sides}: per-label breakdown: {error['type']}: {error['message']}"
    return f"task {record['task']}: {sides}: {error['type']}: {error['message']}"
