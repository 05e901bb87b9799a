"""The webhook route on the real local server: secret check, quick response, work done afterwards, no token in logs."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labelstudio_fake import FakeLabelStudio, running

from custom_metrics.api.app import build_resolver
from custom_metrics.backends.local import LocalBackend
from custom_metrics.labelstudio.dispatch import InlineDispatcher, background_dispatcher, default_dispatcher
from custom_metrics.labelstudio.store import Connection, ConnectionStore
from custom_metrics.server import ControlPlaneServer, LambdaContext, proxy_event
from custom_metrics.service import MetricService

WEBHOOKS = Path(__file__).parent / "data" / "webhooks"
EXAMPLES = Path(__file__).parent.parent / "examples" / "metrics"
KEY = "agreement_score"
PROJECT_TOKEN = "ptok-4b1d9c0e-invite-token-never-logged"
SECRET_HEADER = "X-Custom-Metrics-Secret"


def sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text())["body"]
    if isinstance(body.get("project"), dict):
        body["project"]["token"] = PROJECT_TOKEN
    return body


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with running() as fake:
        yield fake


@pytest.fixture
def secret(state_dir: Path, fake: FakeLabelStudio) -> str:
    store = ConnectionStore(state_dir)
    store.save(Connection(project="p1", url=fake.url, ls_project=1))
    store.save_token("p1", fake.token)
    created = store.webhook_secret("p1", create=True)
    assert created is not None
    return created


@pytest.fixture
def base_url(state_dir: Path, secret: str) -> Iterator[str]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    service.put_metric("p1", code=(EXAMPLES / "choices_exact_match.py").read_text())
    server = ControlPlaneServer(("127.0.0.1", 0), service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    background_dispatcher().wait_idle(30)
    server.shutdown()
    server.server_close()
    service.close()


def post(
    base_url: str, body: Any, secret: str | None, project: str = "p1", raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base_url}/webhooks/label-studio?project={project}", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if secret is not None:
        request.add_header(SECRET_HEADER, secret)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def two_annotations(fake: FakeLabelStudio) -> int:
    task = fake.add_task({"text": "I love this product"})
    fake.add_annotation(task, 2, "Positive")
    fake.add_annotation(task, 3, "Negative")
    return task


def test_webhook_without_secret_is_401(base_url: str, fake: FakeLabelStudio) -> None:
    two_annotations(fake)
    status, body = post(base_url, sample("ANNOTATION_CREATED"), None)
    background_dispatcher().wait_idle(30)
    assert status == 401
    assert SECRET_HEADER in body["message"]
    assert fake.requests == []


def test_webhook_wrong_secret_is_401(base_url: str, fake: FakeLabelStudio, secret: str) -> None:
    two_annotations(fake)
    status, _ = post(base_url, sample("ANNOTATION_CREATED"), secret[:-1] + ("x" if secret[-1] != "x" else "y"))
    background_dispatcher().wait_idle(30)
    assert status == 401
    assert fake.requests == []


def test_webhook_unknown_project_is_401(base_url: str, fake: FakeLabelStudio, secret: str) -> None:
    status, _ = post(base_url, sample("ANNOTATION_CREATED"), secret, project="other")
    assert status == 401


def test_webhook_invalid_project_name_is_401(base_url: str, secret: str) -> None:
    status, _ = post(base_url, sample("ANNOTATION_CREATED"), secret, project="..%2Fp1")
    assert status == 401


def test_webhook_annotation_created_writes_score(base_url: str, fake: FakeLabelStudio, secret: str) -> None:
    task = two_annotations(fake)
    started = time.monotonic()
    status, body = post(base_url, sample("ANNOTATION_CREATED"), secret)
    elapsed = time.monotonic() - started
    assert status == 202
    assert body == {"action": "ANNOTATION_CREATED", "queued": True}
    # Label Studio 1.23.2 waits at most 1 s for the receiver, so the response must come well before.
    assert elapsed < 0.5
    assert background_dispatcher().wait_idle(30)
    assert fake.tasks[task]["data"] == {"text": "I love this product", KEY: 0.0}


def test_webhook_annotations_deleted_rescores_task(base_url: str, fake: FakeLabelStudio, secret: str) -> None:
    task = two_annotations(fake)
    third = fake.add_annotation(task, 4, "Positive")
    post(base_url, sample("ANNOTATION_CREATED"), secret)
    assert background_dispatcher().wait_idle(30)
    assert fake.tasks[task]["data"][KEY] == pytest.approx(1 / 3)
    fake.delete_annotation(third)
    body = sample("ANNOTATIONS_DELETED")
    body["annotations"] = [{"id": third}]
    body["project"]["id"] = 1
    status, _ = post(base_url, body, secret)
    assert status == 202
    assert background_dispatcher().wait_idle(30)
    assert fake.tasks[task]["data"][KEY] == 0.0


def test_webhook_project_updated_is_acknowledged(base_url: str, fake: FakeLabelStudio, secret: str) -> None:
    status, body = post(base_url, sample("PROJECT_UPDATED"), secret)
    assert status == 200
    assert body["queued"] is False


def test_webhook_not_json_is_400(base_url: str, secret: str) -> None:
    status, _ = post(base_url, None, secret, raw=b"{not json")
    assert status == 400


def test_webhook_logs_never_contain_project_token(
    base_url: str, fake: FakeLabelStudio, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    two_annotations(fake)
    caplog.set_level(logging.DEBUG)
    names = sorted(path.stem for path in WEBHOOKS.glob("*.json"))
    for name in names:
        post(base_url, sample(name), secret)
        post(base_url, sample(name), None)
    assert background_dispatcher().wait_idle(60)
    assert len(caplog.records) > len(names)
    for record in caplog.records:
        assert PROJECT_TOKEN not in record.getMessage(), record.name
        assert PROJECT_TOKEN not in json.dumps(record.__dict__, default=str), record.name
        assert secret not in json.dumps(record.__dict__, default=str), record.name
    assert PROJECT_TOKEN not in caplog.text


def test_webhook_on_lambda_runs_inline(
    state_dir: Path, fake: FakeLabelStudio, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "custom-metrics-control-plane")
    assert isinstance(default_dispatcher(), InlineDispatcher)
    task = two_annotations(fake)
    service = MetricService(LocalBackend(state_dir, workers=1))
    try:
        service.put_metric("p1", code=(EXAMPLES / "choices_exact_match.py").read_text())
        resolver = build_resolver(lambda: service)
        body = json.dumps(sample("ANNOTATION_CREATED")).encode()
        headers = {"Content-Type": "application/json", SECRET_HEADER: secret}
        event = proxy_event("POST", "/webhooks/label-studio?project=p1", headers, body, "req-1", "127.0.0.1")
        response = resolver.resolve(event, LambdaContext(aws_request_id="req-1"))
    finally:
        service.close()
    assert response["statusCode"] == 202
    # Inline work is done before the response, so the score is already written.
    assert fake.tasks[task]["data"][KEY] == 0.0
