"""The HTTP API through a real server on 127.0.0.1, over the local backend with real workers."""

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

CONSTANT = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
HALF = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def server(state_dir: Path) -> Iterator[ControlPlaneServer]:
    service = MetricService(LocalBackend(state_dir, workers=2))
    server = ControlPlaneServer(("127.0.0.1", 0), service, max_body_bytes=4 * 1024 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    service.close()


@pytest.fixture
def client(server: ControlPlaneServer) -> Client:
    host, port = server.server_address[:2]
    return Client(f"http://{host}:{port}")


def ner_tasks(corpus_dir: Path) -> Any:
    return json.loads((corpus_dir / "labels_taxonomy_3annotators_leoka.json").read_text())


def test_put_metric_creates_then_reports_unchanged(client: Client) -> None:
    status, created = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "tags": {"team": "qa"}})
    assert status == 201
    assert created["result"] == "created"
    assert created["function"]["name"] == "custom-metric-p1"
    status, again = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "tags": {"team": "qa"}})
    assert status == 200
    assert again["result"] == "unchanged"
    assert again["function"]["code_sha256"] == created["function"]["code_sha256"]


def test_put_metric_with_changed_code_updates_sha(client: Client) -> None:
    _, created = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, updated = client.request("PUT", "/projects/p1/metric", {"code": HALF})
    assert status == 200
    assert updated["result"] == "updated"
    assert updated["function"]["code_sha256"] != created["function"]["code_sha256"]


def test_put_metric_with_prefix_names_function(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "prefix": "lab"})
    assert status == 201
    assert body["function"]["name"] == "custom-metric-lab-p1"


def test_get_metric_returns_source_and_tags(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "tags": {"team": "qa"}})
    status, body = client.request("GET", "/projects/p1/metric")
    assert status == 200
    assert body["function"]["source"] == CONSTANT
    assert body["function"]["tags"]["team"] == "qa"
    assert body["function"]["status"] == "Active"


def test_get_missing_metric_is_404(client: Client) -> None:
    status, body = client.request("GET", "/projects/nothing/metric")
    assert status == 404
    assert "custom-metric-nothing" in body["message"]


def test_delete_metric_then_get_is_404(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, body = client.request("DELETE", "/projects/p1/metric")
    assert status == 200
    assert body["deleted"] == "custom-metric-p1"
    assert client.request("GET", "/projects/p1/metric")[0] == 404


def test_list_metrics_lists_deployed(client: Client) -> None:
    client.request("PUT", "/projects/a/metric", {"code": CONSTANT})
    client.request("PUT", "/projects/b/metric", {"code": CONSTANT})
    status, body = client.request("GET", "/metrics")
    assert status == 200
    assert [function["name"] for function in body["functions"]] == ["custom-metric-a", "custom-metric-b"]


def test_put_metric_not_json_is_400(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", raw=b"{not json")
    assert status == 400
    assert "not valid JSON" in body["message"]


def test_put_metric_unknown_field_is_400(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "colour": "red"})
    assert status == 400
    assert "colour" in body["message"]


def test_put_metric_bad_tags_rejected(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT, "tags": {"aws:x": "1", "ok": "a|b"}})
    assert status == 400
    assert len(body["errors"]) == 2
    assert client.request("GET", "/projects/p1/metric")[0] == 404


def test_put_metric_syntax_error_keeps_previous(client: Client) -> None:
    _, created = client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, body = client.request("PUT", "/projects/p1/metric", {"code": "def agreement(a, b, per_label=False)\n"})
    assert status == 422
    assert "line 1" in body["message"]
    _, current = client.request("GET", "/projects/p1/metric")
    assert current["function"]["code_sha256"] == created["function"]["code_sha256"]


def test_put_metric_oversize_code_is_413(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", {"code": "#" * (256 * 1024 + 1)})
    assert status == 413
    assert "256 KiB" in body["message"]


def test_put_metric_bad_project_is_400(client: Client) -> None:
    status, body = client.request("PUT", "/projects/bad.name/metric", {"code": CONSTANT})
    assert status == 400
    assert "bad.name" in body["message"]


def test_request_body_over_server_limit_is_413(client: Client) -> None:
    status, body = client.request("POST", "/projects/p1/agreement", raw=b"[" + b" " * (5 * 1024 * 1024) + b"]")
    assert status == 413
    assert "over the server's limit" in body["message"]


def test_unknown_route_is_404_json(client: Client) -> None:
    status, body = client.request("GET", "/nowhere")
    assert status == 404
    assert "no route for GET /nowhere" in body["message"]


def test_check_metric_runs_trial_on_tasks(client: Client, corpus_dir: Path) -> None:
    status, body = client.request("POST", "/projects/p1/metric/check", {"code": HALF, "tasks": ner_tasks(corpus_dir)})
    assert status == 200
    assert body["valid"] is True
    assert body["trial"]["scored"] == 24
    assert {pair["score"] for pair in body["trial"]["pairs"]} == {0.5}


def test_check_metric_reports_syntax_error(client: Client) -> None:
    status, body = client.request("POST", "/projects/p1/metric/check", {"code": "def agreement(:\n"})
    assert status == 200
    assert body["valid"] is False
    assert "line 1" in body["check"]["errors"][0]


def test_agreement_scores_real_export(client: Client, corpus_dir: Path, examples_dir: Path) -> None:
    code = (examples_dir / "metrics" / "span_overlap.py").read_text()
    client.request("PUT", "/projects/ner/metric", {"code": code})
    status, body = client.request(
        "POST", "/projects/ner/agreement", {"tasks": ner_tasks(corpus_dir), "per_label": True}
    )
    assert status == 200
    assert len(body["tasks"]) == 8
    assert len(body["pairs"]) == 24
    assert body["errors"] == 0
    assert 0.0 < body["agreement"] < 1.0
    assert len(body["annotators"]) == 3
    assert "Person" in body["labels"]
    assert body["function"]["name"] == "custom-metric-ner"


def test_agreement_without_deployed_metric_is_404(client: Client) -> None:
    status, body = client.request("POST", "/projects/none/agreement", {"tasks": []})
    assert status == 404
    assert "deploy" in body["message"]


def test_agreement_with_bad_pairs_mode_is_400(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, body = client.request("POST", "/projects/p1/agreement", {"tasks": [], "pairs": "every"})
    assert status == 400
    assert "pairs" in body["message"]


def test_agreement_with_bad_task_shape_is_400(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, body = client.request("POST", "/projects/p1/agreement", {"tasks": [{"annotations": [{"id": 1}]}]})
    assert status == 400
    assert "`result` is missing" in body["message"]


def test_agreement_per_control_scores_each_control(client: Client, corpus_dir: Path, examples_dir: Path) -> None:
    code = (examples_dir / "metrics" / "span_overlap.py").read_text()
    client.request("PUT", "/projects/ner/metric", {"code": code})
    status, body = client.request(
        "POST", "/projects/ner/agreement", {"tasks": ner_tasks(corpus_dir), "per_control": True}
    )
    assert status == 200
    assert set(body["controls"]) == {"Category", "label"}
    # The span metric ignores taxonomy results, so the taxonomy control alone is two empty sides.
    assert body["controls"]["Category"] == 1.0
    # Every task has three pairs, so the mean over pairs equals the mean of task means.
    assert body["controls"]["label"] == pytest.approx(body["agreement"])
    assert set(body["pairs"][0]["per_control"]) == {"Category", "label"}


def test_put_metric_prefix_clash_rejected(client: Client) -> None:
    client.request("PUT", "/projects/a-b/metric", {"code": CONSTANT})
    status, body = client.request("PUT", "/projects/b/metric", {"code": HALF, "prefix": "a"})
    assert status == 409
    assert "project 'a-b'" in body["message"]
    _, kept = client.request("GET", "/projects/a-b/metric")
    assert kept["function"]["source"] == CONSTANT


def test_body_not_utf8_is_400(client: Client) -> None:
    status, body = client.request("PUT", "/projects/p1/metric", raw=b'{"code": "\xff\xfe"}')
    assert status == 400
    assert "not UTF-8" in body["message"]


def test_body_nested_too_deeply_is_400(client: Client) -> None:
    status, body = client.request("POST", "/projects/p1/agreement", raw=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert "too deeply" in body["message"]


def test_tasks_nested_too_deeply_is_400(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    raw = b'{"tasks": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, body = client.request("POST", "/projects/p1/agreement", raw=raw)
    assert status == 400
    assert "too deeply" in body["message"]


def test_logs_non_finite_start_is_400(client: Client) -> None:
    client.request("PUT", "/projects/p1/metric", {"code": CONSTANT})
    status, body = client.request("GET", "/projects/p1/metric/logs?start=nan")
    assert status == 400
    assert "finite" in body["message"]


def test_negative_content_length_is_400(server: ControlPlaneServer) -> None:
    import http.client

    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=30)
    connection.putrequest("POST", "/projects/p1/agreement")
    connection.putheader("Content-Length", "-5")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400
    assert "byte count" in json.loads(response.read())["message"]
    connection.close()


def raw_request(server: ControlPlaneServer, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, Any]]:
    import http.client

    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=30)
    connection.putrequest("POST", "/projects/p1/metric/check", skip_host=True)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    result = response.status, json.loads(response.read())
    connection.close()
    return result


def test_foreign_host_header_is_403(server: ControlPlaneServer) -> None:
    body = json.dumps({"code": CONSTANT}).encode()
    status, answer = raw_request(server, {"Host": "attacker.example", "Content-Type": "application/json"}, body)
    assert status == 403
    assert "attacker.example" in answer["message"]


def test_foreign_origin_is_403(server: ControlPlaneServer) -> None:
    port = server.server_address[1]
    headers = {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example", "Content-Type": "application/json"}
    status, answer = raw_request(server, headers, json.dumps({"code": CONSTANT}).encode())
    assert status == 403
    assert "evil.example" in answer["message"]


def test_plain_text_body_is_415(server: ControlPlaneServer) -> None:
    port = server.server_address[1]
    headers = {"Host": f"localhost:{port}", "Content-Type": "text/plain"}
    status, answer = raw_request(server, headers, json.dumps({"code": CONSTANT}).encode())
    assert status == 415
    assert "application/json" in answer["message"]


def test_same_origin_json_is_accepted(server: ControlPlaneServer) -> None:
    port = server.server_address[1]
    headers = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}", "Content-Type": "application/json"}
    status, answer = raw_request(server, headers, json.dumps({"code": CONSTANT}).encode())
    assert status == 200
    assert answer["valid"] is True


def test_check_metric_reports_broken_per_label_branch(client: Client, corpus_dir: Path) -> None:
    code = "def agreement(a, b, per_label=False):\n    if per_label:\n        return {'x': 2.0}\n    return 1.0\n"
    status, body = client.request("POST", "/projects/p1/metric/check", {"code": code, "tasks": ner_tasks(corpus_dir)})
    assert status == 200
    assert body["valid"] is False
    assert body["trial"]["pairs"][0]["per_label_error"]["type"] == "InvalidReturnValue"
