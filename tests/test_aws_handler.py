"""The control-plane Lambda handler under moto (IAM, Lambda, Logs), driven with the files in events/.

moto cannot run Lambda code without Docker, so these tests replace the one method where moto would
start a container (`LambdaFunction._invoke_lambda`) with a call into the local sandbox's WorkerPool
on the zip that was uploaded to moto. The Invoke request and response still pass through botocore
and moto, FunctionError included; only the code execution is local.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction, lambda_backends

from custom_metrics.backends.base import BatchFailedError
from custom_metrics.backends.local import LocalBackend
from custom_metrics.sandbox import WorkerPool
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"
APP_PATH = REPO_ROOT / "functions" / "control_plane" / "app.py"
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION = "custom-metric-qa-sentiment"
# Lambda's errorType for each way the local sandbox reports a whole-batch failure.
ERROR_TYPES = {"timeout": "Sandbox.Timedout", "memory": "Runtime.OutOfMemory", "crash": "Runtime.ExitError"}


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    return event


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["body"])
    return body


class LambdaContext:
    function_name = "custom-metrics-ControlPlaneFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:custom-metrics-ControlPlaneFunction"
    aws_request_id = "6f1c1c2e-0000-4000-8000-000000000001"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


@pytest.fixture
def load_app() -> Iterator[Any]:
    """Return a loader of functions/control_plane/app.py as a fresh module, as the Lambda runtime imports it.

    Importing the module points the `custom_metrics` logger at Powertools' JSON handler and stops it
    propagating. The fixture restores the logger afterwards, so other tests see the default.
    """
    package_logger = logging.getLogger("custom_metrics")
    saved = (list(package_logger.handlers), package_logger.propagate, package_logger.level)

    def load() -> ModuleType:
        spec = importlib.util.spec_from_file_location("control_plane_app", APP_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    package_logger.handlers, package_logger.propagate = saved[0], saved[1]
    package_logger.setLevel(saved[2])


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(2)
    yield workers
    workers.close()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pool: WorkerPool) -> Iterator[dict[str, Any]]:
    """moto with an execution role, a runtime layer and the control plane's environment."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CustomMetrics")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "custom-metrics")
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", _sandbox_invoker(pool, tmp_path / "code"))
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName="custom-metrics-execution", AssumeRolePolicyDocument=json.dumps(trust))
        layer = boto3.client("lambda", region_name=REGION).publish_layer_version(
            LayerName="custom-metrics-runtime",
            Content={"ZipFile": _zip({"python/custom_metrics_runtime/__init__.py": ""})},
            CompatibleRuntimes=["python3.11"],
        )
        monkeypatch.setenv("LS_LAMBDA_ROLE_CUSTOM_METRICS", role["Role"]["Arn"])
        monkeypatch.setenv("LS_LAMBDA_REGION_CUSTOM_METRICS", REGION)
        monkeypatch.setenv("CUSTOM_METRICS_RUNTIME_LAYER_ARN", layer["LayerVersionArn"])
        monkeypatch.setenv("CUSTOM_METRICS_PREFIX", "qa")
        yield {"role_arn": role["Role"]["Arn"], "layer_arn": layer["LayerVersionArn"]}


@pytest.fixture
def lambda_calls(aws: dict[str, Any]) -> tuple[Any, list[str]]:
    """A Lambda client for the service and the list of operation names it calls, in order."""
    client = boto3.client("lambda", region_name=REGION)
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.lambda", record)
    return client, calls


@pytest.fixture
def app(load_app: Any, lambda_calls: tuple[Any, list[str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The handler module, with a service whose package fetcher reads moto's stored zip."""
    module = load_app()
    client, _ = lambda_calls
    service = module.build_service(Settings.from_environment(), lambda_client=client, package_fetcher=_moto_package)
    monkeypatch.setattr(module, "get_service", lambda: service)
    yield module
    service.close()


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _moto_package(url: str) -> bytes:
    for function in lambda_backends[ACCOUNT][REGION]._lambdas.all():
        if function.get_code()["Code"]["Location"] == url:
            code: bytes = function.code_bytes
            return code
    raise OSError(f"no moto function has the package location {url}")


def _sandbox_invoker(pool: WorkerPool, root: Path) -> Any:
    """Build a replacement for moto's Docker invocation that runs the package in the local sandbox."""

    unpack_lock = threading.Lock()

    def invoke(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        code_dir = root / hashlib.sha256(function.code_bytes).hexdigest()
        with unpack_lock:  # the orchestrator invokes from several threads at once
            if not code_dir.exists():
                with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
                    archive.extractall(code_dir)
        try:
            response = pool.invoke(code_dir, event, float(function.timeout), int(function.memory_size))
        except BatchFailedError as failure:
            error = {"errorType": ERROR_TYPES.get(failure.reason, "Runtime.Unknown"), "errorMessage": failure.message}
            return json.dumps(error), True, ""
        return json.dumps(response), False, ""

    return invoke


def test_handler_put_creates_configured_function(app: ModuleType, aws: dict[str, Any]) -> None:
    response = app.lambda_handler(load_event("put_metric"), LambdaContext())

    assert response["statusCode"] == 201, response["body"]
    assert body_of(response)["function"]["name"] == FUNCTION
    deployed = boto3.client("lambda", region_name=REGION).get_function(FunctionName=FUNCTION)
    assert deployed["Configuration"]["Role"] == aws["role_arn"]
    assert [layer["Arn"] for layer in deployed["Configuration"]["Layers"]] == [aws["layer_arn"]]
    assert deployed["Configuration"]["Handler"] == "custom_metrics_runtime.handler.lambda_handler"
    assert deployed["Tags"]["team"] == "annotation-quality"
    assert deployed["Tags"]["custom-metrics:project"] == "sentiment"
    assert deployed["Tags"]["custom-metrics:managed-by"] == "custom-metrics"


def test_handler_second_put_same_code_makes_no_update(app: ModuleType, lambda_calls: tuple[Any, list[str]]) -> None:
    client, calls = lambda_calls
    qualifiers: list[str | None] = []

    def record_qualifier(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "GetFunction":
            qualifiers.append(params.get("Qualifier"))

    client.meta.events.register("before-parameter-build.lambda", record_qualifier)
    app.lambda_handler(load_event("put_metric"), LambdaContext())
    first_calls = list(calls)
    del qualifiers[:]

    response = app.lambda_handler(load_event("put_metric"), LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    assert body_of(response)["result"] == "unchanged"
    assert "CreateFunction" in first_calls
    assert "CreateAlias" in first_calls
    # Only the two reads: $LATEST for status and tags, `live` for the serving version's code and configuration.
    assert calls[len(first_calls) :] == ["GetFunction", "GetFunction"]
    assert qualifiers == [None, "live"]


def test_handler_get_reports_active_with_source(app: ModuleType) -> None:
    app.lambda_handler(load_event("put_metric"), LambdaContext())

    response = app.lambda_handler(load_event("get_metric"), LambdaContext())

    function = body_of(response)["function"]
    assert response["statusCode"] == 200
    assert function["status"] == "Active"
    assert "def agreement" in function["source"]


def test_handler_list_and_delete(app: ModuleType) -> None:
    app.lambda_handler(load_event("put_metric"), LambdaContext())

    listed = app.lambda_handler(load_event("list_metrics"), LambdaContext())
    deleted = app.lambda_handler(load_event("delete_metric"), LambdaContext())
    missing = app.lambda_handler(load_event("get_metric"), LambdaContext())

    assert [function["name"] for function in body_of(listed)["functions"]] == [FUNCTION]
    assert deleted["statusCode"] == 200
    assert missing["statusCode"] == 404
    assert FUNCTION in body_of(missing)["message"]


def test_handler_agreement_matches_local_backend(app: ModuleType, tmp_path: Path) -> None:
    app.lambda_handler(load_event("put_metric"), LambdaContext())
    event = load_event("agreement")

    response = app.lambda_handler(event, LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    request = json.loads(event["body"])
    put_body = json.loads(load_event("put_metric")["body"])
    local = MetricService(LocalBackend(tmp_path / "local", workers=1), default_prefix="qa")
    try:
        local.put_metric(
            "sentiment",
            code=put_body["code"],
            tags=put_body["tags"],
            timeout=put_body["timeout"],
            memory_size=put_body["memory_size"],
        )
        expected = local.score(
            "sentiment",
            request["tasks"],
            per_label=request["per_label"],
            request_id=event["requestContext"]["requestId"],
        )
    finally:
        local.close()
    assert body_of(response) == json.loads(json.dumps(expected))


def test_handler_agreement_pair_error_keeps_other_pairs(app: ModuleType) -> None:
    event = load_event("put_metric")
    body = json.loads(event["body"])
    body["code"] = (
        "def agreement(annotation_1, annotation_2, per_label=False):\n"
        "    if annotation_1['id'] == 11:\n"
        "        raise ValueError('cannot score annotation 11')\n"
        "    return 1.0\n"
    )
    event["body"] = json.dumps(body)
    app.lambda_handler(event, LambdaContext())
    agreement = load_event("agreement")
    request = json.loads(agreement["body"])
    request["per_label"] = False
    agreement["body"] = json.dumps(request)

    response = app.lambda_handler(agreement, LambdaContext())

    text = response["body"]
    assert response["statusCode"] == 200, text
    assert "cannot score annotation 11" in text
    assert '"score":1.0' in text.replace(" ", "")


def test_handler_check_metric_runs_trial(app: ModuleType) -> None:
    response = app.lambda_handler(load_event("check_metric"), LambdaContext())

    body = body_of(response)
    assert response["statusCode"] == 200, response["body"]
    assert body["valid"] is True
    assert body["trial"]["errors"] == 0


def test_handler_logs_returns_rows(app: ModuleType) -> None:
    app.lambda_handler(load_event("put_metric"), LambdaContext())
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/lambda/{FUNCTION}"
    now_ms = int(time.time() * 1000)
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="stream")
    logs.put_log_events(
        logGroupName=group, logStreamName="stream", logEvents=[{"timestamp": now_ms - 5000, "message": "batch done"}]
    )
    event = copy.deepcopy(load_event("metric_logs"))
    event["queryStringParameters"] = {"start": str(now_ms // 1000 - 60), "end": str(now_ms // 1000), "limit": "10"}

    response = app.lambda_handler(event, LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    assert [row["message"] for row in body_of(response)["rows"]] == ["batch done"]


def test_handler_missing_setting_names_it(aws: dict[str, Any], load_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LS_LAMBDA_ROLE_CUSTOM_METRICS")
    module = load_app()

    response = module.lambda_handler(load_event("get_metric"), LambdaContext())

    assert response["statusCode"] == 500
    assert "LS_LAMBDA_ROLE_CUSTOM_METRICS" in body_of(response)["message"]


def test_handler_statistics_needs_no_function(app: ModuleType) -> None:
    response = app.lambda_handler(load_event("statistics"), LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    assert body_of(response)["project"] == "sentiment"
