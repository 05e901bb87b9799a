"""RemoteClient: SigV4 signing, error mapping, and the same JSON as MetricService over a real server.

Every server here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import ConfigurationError, FunctionNotFoundError, MetricSourceError
from custom_metrics.remote import RemoteClient, RemoteRequestError
from custom_metrics.server import ControlPlaneServer
from custom_metrics.service import MetricService

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SOURCE = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"


class _Recorder(BaseHTTPRequestHandler):
    """Record each request and reply with the next queued (status, body)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        server: Any = self.server
        server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": self.rfile.read(length) if length else b"",
            }
        )
        status, body = server.replies.pop(0)
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests, server.replies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _endpoint(server: Any) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1"


def test_remote_signs_with_sigv4_for_execute_api(recorder: Any) -> None:
    recorder.replies.append((200, {"functions": []}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    assert client.list_metrics() == {"functions": []}

    headers = recorder.requests[0]["headers"]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    assert "X-Amz-Date" in headers
    assert recorder.requests[0]["path"] == "/v1/metrics"


def test_remote_put_sends_only_given_fields(recorder: Any) -> None:
    recorder.replies.append((201, {"result": "created"}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    client.put_metric("sentiment", code=SOURCE, tags={"team": "qa"})

    request = recorder.requests[0]
    assert request["method"] == "PUT"
    assert request["path"] == "/v1/projects/sentiment/metric"
    assert json.loads(request["body"]) == {"code": SOURCE, "tags": {"team": "qa"}}


def test_remote_logs_sends_query_parameters(recorder: Any) -> None:
    recorder.replies.append((200, {"function": "custom-metric-sentiment", "rows": []}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    client.logs("sentiment", "qa", 100.0, 200.5, 25)

    assert recorder.requests[0]["path"] == (
        "/v1/projects/sentiment/metric/logs?start=100.000&end=200.500&limit=25&prefix=qa"
    )


def test_remote_not_found_raises_with_api_message(recorder: Any) -> None:
    recorder.replies.append((404, {"message": "no metric function named 'custom-metric-x' is deployed"}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    with pytest.raises(FunctionNotFoundError) as raised:
        client.get_metric("x")

    assert raised.value.message == "no metric function named 'custom-metric-x' is deployed"


def test_remote_422_keeps_details(recorder: Any) -> None:
    recorder.replies.append((422, {"message": "metric check failed", "errors": ["no agreement"]}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    with pytest.raises(MetricSourceError) as raised:
        client.put_metric("x", code="x = 1\n")

    assert raised.value.details == {"errors": ["no agreement"]}


def test_remote_403_explains_signing(recorder: Any) -> None:
    recorder.replies.append((403, {"message": "Missing Authentication Token"}))
    client = RemoteClient(_endpoint(recorder), region="eu-west-1", credentials=CREDENTIALS)

    with pytest.raises(RemoteRequestError) as raised:
        client.list_metrics()

    assert raised.value.status_code == 403
    assert "execute-api:Invoke" in raised.value.message


def test_remote_unreachable_endpoint_raises() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    endpoint = _endpoint(server)
    server.server_close()  # nothing listens on the port any more
    client = RemoteClient(endpoint, region="eu-west-1", credentials=CREDENTIALS, timeout=5)

    with pytest.raises(RemoteRequestError) as raised:
        client.list_metrics()

    assert "could not reach" in raised.value.message


def test_remote_region_read_from_execute_api_host() -> None:
    client = RemoteClient("https://abc123.execute-api.ap-south-1.amazonaws.com/v1", credentials=CREDENTIALS)

    assert client._region == "ap-south-1"


def test_remote_rejects_non_http_endpoint() -> None:
    with pytest.raises(ConfigurationError):
        RemoteClient("ftp://example.com/v1", credentials=CREDENTIALS, region="eu-west-1")


@pytest.fixture
def local_server(state_dir: Path) -> Iterator[tuple[ControlPlaneServer, MetricService]]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    server = ControlPlaneServer(("127.0.0.1", 0), service, max_body_bytes=4 * 1024 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, service
    server.shutdown()
    server.server_close()
    service.close()


def test_remote_returns_same_json_as_service(local_server: tuple[ControlPlaneServer, MetricService]) -> None:
    server, service = local_server
    host, port = server.server_address[:2]
    client = RemoteClient(f"http://{host}:{port}", region="eu-west-1", credentials=CREDENTIALS)
    tasks = [
        {"id": 1, "annotations": [{"id": 11, "result": []}, {"id": 12, "result": []}]},
        {"id": 2, "annotations": [{"id": 21, "result": []}, {"id": 22, "result": []}]},
    ]

    deployed = client.put_metric("sentiment", code=SOURCE)
    remote_get = client.get_metric("sentiment")
    remote_list = client.list_metrics()
    remote_score = client.score("sentiment", tasks)
    local_score = service.score("sentiment", tasks, request_id=remote_score["request_id"])

    assert deployed["result"] == "created"
    assert remote_get == service.get_metric("sentiment")
    assert remote_list == service.list_metrics()
    assert remote_score == json.loads(json.dumps(local_score))
