"""Print the built-ins' task agreement next to the value Label Studio Enterprise stored in its export.

Usage: python examples/enterprise/compare.py [EXPORT.json ...]
(default: the three Label Studio Enterprise exports of LEOKA narratives under tests/data/corpus).

Each task of those exports carries `agreement`, the percentage Label Studio Enterprise computed.
This script scores every pair of annotations with the `labels` built-in (span overlap of the NER
control) and the `taxonomy` built-in, and combines them per pair as the mean over the controls
that either annotation uses. A task's value is the mean of its pairs. See README.md beside this file.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from statistics import fmean
from typing import Any

from custom_metrics.backends.local import LocalBackend
from custom_metrics.service import MetricService
from custom_metrics.tasks import build_pairs, parse_export

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "corpus"
DEFAULT_EXPORTS = [
    CORPUS / "labels_taxonomy_3annotators_leoka.json",
    CORPUS / "labels_taxonomy_4annotators_leoka.json",
    CORPUS / "labels_taxonomy_edgecases_leoka.json",
]
BUILTINS = ("labels", "taxonomy")


def compare(service: MetricService, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per task: the stored value, each built-in's task mean and the combined mean."""
    pairs = build_pairs(parse_export(tasks))
    pair_scores = {name: [pair["score"] for pair in service.score(name, tasks)["pairs"]] for name in BUILTINS}
    combined: dict[Any, list[float]] = {}
    alone: dict[str, dict[Any, list[float]]] = {name: {} for name in BUILTINS}
    for index, pair in enumerate(pairs):
        used = _types(pair.first.body) | _types(pair.second.body)
        present = [pair_scores[name][index] for name in BUILTINS if name in used] or [1.0]
        combined.setdefault(pair.task.key, []).append(fmean(present))
        for name in BUILTINS:
            alone[name].setdefault(pair.task.key, []).append(pair_scores[name][index])
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"task": task["id"], "enterprise": task.get("agreement")}
        for name in BUILTINS:
            row[name] = _mean(alone[name].get(task["id"]))
        row["combined"] = _mean(combined.get(task["id"]))
        rows.append(row)
    return rows


def _types(annotation: dict[str, Any]) -> set[str]:
    return {region.get("type") for region in annotation["result"]}


def _mean(values: list[float] | None) -> float | None:
    return fmean(values) if values else None


def _cell(value: float | None, width: int) -> str:
    return f"{'null':>{width}}" if value is None else f"{value * 100:>{width}.1f}"


def main(paths: list[Path]) -> None:
    with tempfile.TemporaryDirectory() as state_dir:
        service = MetricService(LocalBackend(Path(state_dir)))
        try:
            for name in BUILTINS:
                service.put_metric(name, builtin=name)
            print(f"{'export':<38} {'task':>9} {'LSE %':>6} {'labels':>7} {'taxonomy':>8} {'combined':>8}")
            for path in paths:
                for row in compare(service, json.loads(path.read_text())):
                    cells = f"{_cell(row['labels'], 7)} {_cell(row['taxonomy'], 8)} {_cell(row['combined'], 8)}"
                    print(f"{path.name:<38} {row['task']:>9} {row['enterprise']:>6.1f} {cells}")
        finally:
            service.close()


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]] or DEFAULT_EXPORTS)
