"""Label Studio sync on AWS under moto: the webhook through the control-plane handler, and the reconcile handler.

The connection store is the S3 and SSM one, selected by the variables the stack sets. Scoring uses a
local-backend service put in place of `get_service` (the Lambda backend has its own tests), and Label
Studio is the fake from labelstudio_fake on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from labelstudio_fake import FakeLabelStudio, running
from moto import mock_aws

from custom_metrics.backends.local import LocalBackend
from custom_metrics.labelstudio import stores
from custom_metrics.labelstudio.aws_store import AwsConnectionStore, AwsStoreSettings
from custom_metrics.labelstudio.store import Connection
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTROL_PLANE = REPO_ROOT / "functions" / "control_plane"
EVENT_PATH = REPO_ROOT / "events" / "label_studio_webhook.json"
METRIC = REPO_ROOT / "examples" / "metrics" / "choices_exact_match.py"
REGION = "us-east-1"
BUCKET = "custom-metrics-jobs-test"
PARAMETER_PATH = "/custom-metrics/test-stack/label-studio"
PROJECT = "sentiment"
KEY = "agreement_score"
INVITE_TOKEN = "invite-7f3e2d1c-must-never-be-logged"
SECRET_HEADER = "X-Custom-Metrics-Secret"


class LambdaContext:
    function_name = "custom-metrics-ControlPlaneFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:custom-metrics-ControlPlaneFunction"
    aws_request_id = "6f1c1c2e-0000-4000-8000-0000000000aa"

    def __init__(self, remaining_ms: int = 29_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_module(name: str) -> ModuleType:
    """Import a handler file as a fresh module, as the Lambda runtime does."""
    spec = importlib.util.spec_from_file_location(f"test_{name}", CONTROL_PLANE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_package_logger() -> Iterator[None]:
    # Loading a handler points the `custom_metrics` logger at Powertools' JSON handler on stdout.
    package_logger = logging.getLogger("custom_metrics")
    saved = (list(package_logger.handlers), package_logger.propagate, package_logger.level)
    yield
    package_logger.handlers, package_logger.propagate = saved[0], saved[1]
    package_logger.setLevel(saved[2])


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with running() as fake:
        yield fake


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsConnectionStore]:
    """moto S3 and SSM, and the stack's store variables in the environment."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "custom-metrics")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CustomMetrics")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "custom-metrics-ControlPlaneFunction")
    monkeypatch.setenv("LS_LAMBDA_REGION_CUSTOM_METRICS", REGION)
    monkeypatch.setenv("CUSTOM_METRICS_LABEL_STUDIO_BUCKET", BUCKET)
    monkeypatch.setenv("CUSTOM_METRICS_LABEL_STUDIO_PARAMETER_PATH", PARAMETER_PATH)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    # The cached store's clients must be made inside this test's moto context.
    stores._aws_store.cache_clear()
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield AwsConnectionStore(AwsStoreSettings(bucket=BUCKET, parameter_path=PARAMETER_PATH, region=REGION))
    stores._aws_store.cache_clear()


@pytest.fixture
def service(state_dir: Path) -> Iterator[MetricService]:
    metric_service = MetricService(LocalBackend(state_dir, workers=1))
    metric_service.put_metric(PROJECT, code=METRIC.read_text())
    yield metric_service
    metric_service.close()


@pytest.fixture
def secret(store: AwsConnectionStore, fake: FakeLabelStudio) -> str:
    connect(store, fake, PROJECT)
    created = store.webhook_secret(PROJECT, create=True)
    assert created is not None
    return created


@pytest.fixture
def app(
    restore_package_logger: None, service: MetricService, secret: str, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    module = load_module("app")
    monkeypatch.setattr(module, "get_service", lambda: service)
    return module


def connect(store: AwsConnectionStore, fake: FakeLabelStudio, project: str, *, ls_project: int = 1) -> None:
    store.save(Connection(project=project, url=fake.url, ls_project=ls_project))
    store.save_token(project, fake.token)


def webhook_event(secret: str | None, project: str = PROJECT) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT_PATH.read_text("utf-8"))
    body = json.loads(event["body"])
    body["project"]["token"] = INVITE_TOKEN
    event["body"] = json.dumps(body)
    event["queryStringParameters"] = {"project": project}
    event["multiValueQueryStringParameters"] = {"project": [project]}
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop(SECRET_HEADER, None)
    if secret is not None:
        event["headers"][SECRET_HEADER] = secret
        event["multiValueHeaders"][SECRET_HEADER] = [secret]
    return event


def two_annotations(fake: FakeLabelStudio) -> int:
    task = fake.add_task({"text": "I love this product"})
    fake.add_annotation(task, 2, "Positive")
    fake.add_annotation(task, 3, "Negative")
    return task


# Webhook through app.lambda_handler ---------------------------------------------------------------


def test_aws_webhook_valid_secret_writes_score(app: ModuleType, fake: FakeLabelStudio, secret: str) -> None:
    task = two_annotations(fake)

    response = app.lambda_handler(webhook_event(secret), LambdaContext())

    assert response["statusCode"] == 202, response["body"]
    assert json.loads(response["body"]) == {"action": "ANNOTATION_CREATED", "queued": True}
    # On Lambda the work runs before the response, so the score is already written back.
    assert fake.tasks[task]["data"] == {"text": "I love this product", KEY: 0.0}
    assert fake.tasks[task]["meta"][KEY]["pairs"] == 1


def test_aws_webhook_records_annotation_map(
    app: ModuleType, fake: FakeLabelStudio, secret: str, store: AwsConnectionStore
) -> None:
    task = two_annotations(fake)

    app.lambda_handler(webhook_event(secret), LambdaContext())

    known, unknown = store.annotation_map(PROJECT).tasks_of([2, 3])
    assert known == {task}
    assert unknown == []


def test_aws_webhook_wrong_secret_is_401(app: ModuleType, fake: FakeLabelStudio, secret: str) -> None:
    task = two_annotations(fake)
    wrong = secret[:-1] + ("x" if secret[-1] != "x" else "y")

    response = app.lambda_handler(webhook_event(wrong), LambdaContext())

    assert response["statusCode"] == 401
    assert SECRET_HEADER in json.loads(response["body"])["message"]
    assert fake.requests == []
    assert KEY not in fake.tasks[task]["data"]


def test_aws_webhook_missing_secret_is_401(app: ModuleType, fake: FakeLabelStudio) -> None:
    two_annotations(fake)

    response = app.lambda_handler(webhook_event(None), LambdaContext())

    assert response["statusCode"] == 401
    assert fake.requests == []


def test_aws_webhook_unknown_project_is_401(app: ModuleType, fake: FakeLabelStudio, secret: str) -> None:
    response = app.lambda_handler(webhook_event(secret, project="other"), LambdaContext())

    assert response["statusCode"] == 401
    assert fake.requests == []


def test_aws_webhook_logs_never_contain_secrets(
    caplog: pytest.LogCaptureFixture, app: ModuleType, fake: FakeLabelStudio, secret: str
) -> None:
    two_annotations(fake)
    # The stack logs at INFO (POWERTOOLS_LOG_LEVEL). At DEBUG, botocore itself logs response bodies,
    # decrypted SSM values included.
    caplog.set_level(logging.INFO)

    app.lambda_handler(webhook_event(secret), LambdaContext())
    app.lambda_handler(webhook_event("wrong-secret"), LambdaContext())

    messages = [record.getMessage() for record in caplog.records]
    assert "webhook received" in messages
    assert "webhook handled" in messages
    assert "webhook rejected: missing or invalid secret" in messages
    for record in caplog.records:
        text = json.dumps(record.__dict__, default=str)
        assert INVITE_TOKEN not in text, record.getMessage()
        assert secret not in text, record.getMessage()
        assert fake.token not in text, record.getMessage()


# Reconcile handler ------------------------------------------------------------------------------


@pytest.fixture
def reconcile_app(restore_package_logger: None, service: MetricService, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_module("reconcile_app")
    monkeypatch.setattr(module, "get_service", lambda: service)
    return module


def test_reconcile_handler_scores_every_project(
    reconcile_app: ModuleType, store: AwsConnectionStore, fake: FakeLabelStudio, service: MetricService
) -> None:
    service.put_metric("other", code=METRIC.read_text())
    fake.projects[2] = {"id": 2, "title": "second project"}
    first = two_annotations(fake)
    second = fake.add_task({"text": "meh"}, project=2)
    fake.add_annotation(second, 2, "Neutral")
    fake.add_annotation(second, 3, "Neutral")
    connect(store, fake, PROJECT)
    connect(store, fake, "other", ls_project=2)

    result = reconcile_app.lambda_handler({"source": "aws.events"}, LambdaContext(remaining_ms=900_000))

    assert sorted(result["reconciled"]) == ["other", PROJECT]
    assert result["failed"] == {}
    assert result["skipped"] == []
    assert fake.tasks[first]["data"][KEY] == 0.0
    assert fake.tasks[second]["data"][KEY] == 1.0
    assert store.sync_state(PROJECT)["written"] == 1


def test_reconcile_handler_named_projects_only(
    reconcile_app: ModuleType, store: AwsConnectionStore, fake: FakeLabelStudio
) -> None:
    task = two_annotations(fake)
    connect(store, fake, PROJECT)
    connect(store, fake, "other")

    result = reconcile_app.lambda_handler({"projects": [PROJECT]}, LambdaContext(remaining_ms=900_000))

    assert list(result["reconciled"]) == [PROJECT]
    assert fake.tasks[task]["data"][KEY] == 0.0


def test_reconcile_handler_failure_does_not_stop_others(
    reconcile_app: ModuleType, store: AwsConnectionStore, fake: FakeLabelStudio
) -> None:
    task = two_annotations(fake)
    connect(store, fake, PROJECT)
    store.save(Connection(project="broken", url=fake.url, ls_project=1))
    store.save_token("broken", "not-the-token")

    result = reconcile_app.lambda_handler({}, LambdaContext(remaining_ms=900_000))

    assert list(result["reconciled"]) == [PROJECT]
    assert list(result["failed"]) == ["broken"]
    assert "not-the-token" not in result["failed"]["broken"]
    assert fake.tasks[task]["data"][KEY] == 0.0


def test_reconcile_handler_leaves_projects_when_time_is_short(
    reconcile_app: ModuleType, store: AwsConnectionStore, fake: FakeLabelStudio
) -> None:
    task = two_annotations(fake)
    connect(store, fake, PROJECT)

    result = reconcile_app.lambda_handler({}, LambdaContext(remaining_ms=30_000))

    assert result["skipped"] == [PROJECT]
    assert result["reconciled"] == {}
    assert fake.requests == []
    assert KEY not in fake.tasks[task]["data"]


def test_reconcile_handler_stalest_project_first(
    reconcile_app: ModuleType, store: AwsConnectionStore, fake: FakeLabelStudio
) -> None:
    for project in ("alpha", "beta", "gamma"):
        connect(store, fake, project)
    store.save_sync_state("alpha", {"last_reconciled_at": "2026-03-01T00:00:00+00:00"})
    store.save_sync_state("gamma", {"last_reconciled_at": "2026-02-01T00:00:00+00:00"})
    calls = iter([900_000, 0, 0])

    class CountdownContext(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return next(calls)

    result = reconcile_app.lambda_handler({}, CountdownContext())

    # beta was never reconciled, so it goes first (and fails: it has no metric); gamma is older than alpha.
    assert list(result["failed"]) == ["beta"]
    assert result["skipped"] == ["gamma", "alpha"]


def test_reconcile_handler_rejects_malformed_projects(reconcile_app: ModuleType, store: AwsConnectionStore) -> None:
    with pytest.raises(Exception, match="list of project names"):
        reconcile_app.lambda_handler({"projects": "sentiment"}, LambdaContext())


# label-studio-sdk routes through app.lambda_handler ------------------------------------------------

SDK_TOKEN = "sdk-token-5e6f7a8b"


def sdk_event(name: str, token: str | None = SDK_TOKEN) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / f"{name}.json").read_text("utf-8"))
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Authorization", None)
    if token is not None:
        event["headers"]["Authorization"] = f"Token {token}"
        event["multiValueHeaders"]["Authorization"] = [f"Token {token}"]
    return event


@pytest.fixture
def lambda_app(
    restore_package_logger: None, store: AwsConnectionStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The handler with a Lambda-backed service, as the stack runs it, and the stack's SDK token."""
    monkeypatch.setenv("CUSTOM_METRICS_API_TOKEN", SDK_TOKEN)
    module = load_module("app")
    settings = Settings(
        role_arn="arn:aws:iam::123456789012:role/custom-metrics-execution",
        region=REGION,
        layer_arn=f"arn:aws:lambda:{REGION}:123456789012:layer:custom-metrics-runtime:1",
    )
    lambda_service = module.build_service(settings)
    monkeypatch.setattr(module, "get_service", lambda: lambda_service)
    yield module
    lambda_service.close()


def test_aws_sdk_metric_params_kept_in_s3(lambda_app: ModuleType, store: AwsConnectionStore) -> None:
    updated = lambda_app.lambda_handler(sdk_event("sdk_update_metric_params"), LambdaContext())
    read = lambda_app.lambda_handler(sdk_event("sdk_get_metric_params"), LambdaContext())

    assert updated["statusCode"] == 200, updated["body"]
    assert read["statusCode"] == 200, read["body"]
    assert json.loads(read["body"])["metric_name"] == "exact_match"
    assert json.loads(read["body"])["metric_params"] == {"labels": ["Positive", "Negative"]}
    stored = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key="label-studio/12/metric-params.json")
    assert json.loads(stored["Body"].read())["agreement_threshold"] == 60


def test_aws_sdk_wrong_token_is_401(lambda_app: ModuleType) -> None:
    response = lambda_app.lambda_handler(sdk_event("sdk_update_metric_params", token="wrong"), LambdaContext())

    assert response["statusCode"] == 401
    assert "sdk-token" not in response["body"]


def test_aws_sdk_get_function_not_deployed(lambda_app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():  # Lambda, in the same moto account as the store.
        response = lambda_app.lambda_handler(sdk_event("sdk_get_function"), LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["status"] == "NotDeployed"
