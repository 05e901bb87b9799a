"""POST /projects/{project}/statistics through a real server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.server import ControlPlaneServer
from custom_metrics.service import MetricService


@pytest.fixture
def base_url(state_dir: Path) -> Iterator[str]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    server = ControlPlaneServer(("127.0.0.1", 0), service, max_body_bytes=4 * 1024 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()
    service.close()


def post(base_url: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_statistics_route_real_export(base_url: str, corpus_dir: Path) -> None:
    tasks = json.loads((corpus_dir / "labels_taxonomy_3annotators_leoka.json").read_text(encoding="utf-8"))

    status, body = post(base_url, "/projects/leoka/statistics", {"tasks": tasks})

    assert status == 200
    assert body["project"] == "leoka"
    assert [control["control"] for control in body["controls"]] == ["Category"]
    assert len(body["controls"][0]["cohen_kappa"]) == 3
    assert isinstance(body["warnings"], list)


def test_statistics_route_degenerate_is_200(base_url: str) -> None:
    task = {"id": 1, "annotations": [{"completed_by": 1, "result": []}]}

    status, body = post(base_url, "/projects/p1/statistics", {"tasks": [task], "include_predictions": True})

    assert status == 200
    assert body["controls"] == []
    assert body["warnings"] == [
        "no choices, taxonomy, rating, pairwise ratings were found in 1 task, so there are no statistics"
    ]


def test_statistics_route_unknown_field_is_400(base_url: str) -> None:
    status, body = post(base_url, "/projects/p1/statistics", {"tasks": [], "per_label": True})

    assert status == 400
    assert "per_label" in body["message"]


def test_statistics_route_bad_task_shape_is_400(base_url: str) -> None:
    status, body = post(base_url, "/projects/p1/statistics", {"tasks": [{"annotations": "none"}]})

    assert status == 400
    assert "`annotations` is a JSON string, expected a list" in body["message"]


def test_statistics_route_bad_project_is_400(base_url: str) -> None:
    status, body = post(base_url, "/projects/bad.name/statistics", {"tasks": []})

    assert status == 400
    assert "project 'bad.name'" in body["message"]
