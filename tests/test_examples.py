"""The example metrics and the Label Studio Enterprise comparison script, run for real."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.service import MetricService

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricService]:
    service = MetricService(LocalBackend(tmp_path_factory.mktemp("state"), workers=2))
    yield service
    service.close()


@pytest.mark.parametrize(
    ("metric", "export", "pairs"),
    [
        ("choices_exact_match.py", "choices_annotations_predictions.json", "all"),
        ("span_overlap.py", "ner_3annotators.json", "annotations"),
        ("rectangle_iou.py", "rectangles_3annotators_prediction.json", "all"),
    ],
)
def test_example_metric_scores_example_data(service: MetricService, metric: str, export: str, pairs: str) -> None:
    project = metric.removesuffix(".py").replace("_", "-")
    service.put_metric(project, code=(EXAMPLES / "metrics" / metric).read_text())
    tasks = json.loads((EXAMPLES / "data" / export).read_text())
    result = service.score(project, tasks, pairs=pairs, per_label=True)
    assert result["errors"] == 0
    assert result["agreement"] is not None
    assert result["labels"]


def test_rectangle_iou_hand_computed() -> None:
    module = load(EXAMPLES / "metrics" / "rectangle_iou.py")

    def boxes(*specs: tuple[str, float, float]) -> dict[str, Any]:
        regions = [
            {
                "type": "rectanglelabels",
                "value": {"x": x, "y": y, "width": 10, "height": 10, "rectanglelabels": [label]},
            }
            for label, x, y in specs
        ]
        return {"result": regions}

    # Shifted by half a width: intersection 50, union 150.
    assert module.agreement(boxes(("Car", 0, 0)), boxes(("Car", 5, 0))) == pytest.approx(1 / 3)
    # One box unmatched on the second side halves the score.
    assert module.agreement(boxes(("Car", 0, 0), ("Car", 50, 50)), boxes(("Car", 0, 0))) == pytest.approx(0.5)
    assert module.agreement(boxes(("Car", 0, 0)), boxes(("Road", 0, 0)), per_label=True) == {"Car": 0.0, "Road": 0.0}


def test_span_overlap_hand_computed() -> None:
    module = load(EXAMPLES / "metrics" / "span_overlap.py")

    def spans(*specs: tuple[str, int, int]) -> dict[str, Any]:
        return {
            "result": [{"type": "labels", "value": {"start": s, "end": e, "labels": [label]}} for label, s, e in specs]
        }

    assert module.agreement(spans(("Date", 0, 10)), spans(("Date", 5, 10))) == pytest.approx(0.5)
    assert module.agreement(spans(), spans()) == 1.0
    assert module.agreement(spans(("Date", 0, 4)), spans(("Time", 0, 4)), per_label=True) == {"Date": 0.0, "Time": 0.0}


def test_enterprise_comparison_rows(service: MetricService) -> None:
    compare = load(EXAMPLES / "enterprise" / "compare.py")
    for name in compare.BUILTINS:
        service.put_metric(name, builtin=name)
    tasks = json.loads((compare.DEFAULT_EXPORTS[0]).read_text())
    rows = compare.compare(service, tasks)
    assert [row["task"] for row in rows] == [task["id"] for task in tasks]
    assert all(0.0 <= row["combined"] <= 1.0 for row in rows)
    # Every task of this export has both controls, so the combined value lies between the two.
    for row in rows:
        assert min(row["labels"], row["taxonomy"]) <= row["combined"] <= max(row["labels"], row["taxonomy"])
