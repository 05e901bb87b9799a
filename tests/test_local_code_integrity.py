"""A metric that rewrites its own stored code cannot change what later runs execute."""

from __future__ import annotations

from pathlib import Path

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import BackendError
from custom_metrics.service import MetricService

SELF_MODIFYING = """
import pathlib

def agreement(annotation_1, annotation_2, per_label=False):
    path = pathlib.Path(__file__)
    path.write_text(path.read_text().replace("return 1.0", "return 0.25"))
    return 1.0
"""

TASKS = [
    {"id": 1, "annotations": [{"id": 1, "completed_by": 1, "result": []}, {"id": 2, "completed_by": 2, "result": []}]}
]


def test_self_modifying_metric_keeps_deployed_code(state_dir: Path) -> None:
    service = MetricService(LocalBackend(state_dir, workers=1))
    try:
        service.put_metric("p1", code=SELF_MODIFYING, force=True)
        first = service.score("p1", TASKS)
        service.backend.close()  # A new worker loads metric.py from disk again.
        second = service.score("p1", TASKS)
    finally:
        service.close()
    assert first["agreement"] == 1.0
    assert second["agreement"] == 1.0
    assert second["function"]["code_sha256"] == first["function"]["code_sha256"]


def test_damaged_metadata_named_and_others_still_listed(state_dir: Path) -> None:
    constant = "def agreement(a, b, per_label=False):\n    return 1.0\n"
    service = MetricService(LocalBackend(state_dir, workers=1))
    try:
        service.put_metric("good", code=constant, force=True)
        service.put_metric("broken", code=constant, force=True)
        (state_dir / "functions" / "custom-metric-broken" / "function.json").write_text("{not json")
        listed = [function["name"] for function in service.list_metrics()["functions"]]
        with pytest.raises(BackendError, match=r"function\.json is damaged"):
            service.get_metric("broken")
    finally:
        service.close()
    assert listed == ["custom-metric-good"]
