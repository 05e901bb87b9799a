"""Load built-in metrics from their rendered source, and read annotation sets from the corpus."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

from custom_metrics import builtins

CORPUS = Path(__file__).parent / "data" / "corpus"


def load_builtin(name: str, options: dict[str, Any] | None = None) -> types.ModuleType:
    """Execute the rendered source of built-in `name`, exactly as it deploys, and return it as a module."""
    module = types.ModuleType(f"builtin_{name}")
    exec(compile(builtins.render(name, options), f"{name}.py", "exec"), module.__dict__)
    return module


def corpus_annotation_sets(file_name: str) -> list[list[dict[str, Any]]]:
    """Return, per task of a corpus file, its annotations and predictions as {"result": [...]} objects.

    Old exports nest the result list one level deeper and use "completions"; webhook payloads carry
    one "annotation". Both are brought to the current shape here, because the built-ins expect it.
    """
    data = json.loads((CORPUS / file_name).read_text(encoding="utf-8"))
    tasks = data if isinstance(data, list) else [data]
    sets = []
    for task in tasks:
        entries = [*task.get("annotations", []), *task.get("predictions", []), *task.get("completions", [])]
        if isinstance(task.get("annotation"), dict):
            entries.append(task["annotation"])
        annotations = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue  # predictions given only by id
            result = entry.get("result") or []
            if result and isinstance(result[0], list):
                result = [item for group in result for item in group]
            annotations.append({"result": result})
        sets.append(annotations)
    return sets


def corpus_files_with(result_type: str) -> list[str]:
    """Return the corpus files that contain at least one result of `result_type`."""
    return sorted(
        path.name
        for path in CORPUS.glob("*.json")
        if any(
            result.get("type") == result_type
            for annotations in corpus_annotation_sets(path.name)
            for annotation in annotations
            for result in annotation["result"]
            if isinstance(result, dict)
        )
    )
