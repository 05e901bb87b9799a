"""Versions, the trial and rollback on the Lambda backend, under moto with the metric code run in the local sandbox.

As in test_aws_handler.py, moto's Docker invocation (`LambdaFunction._invoke_lambda`) is replaced by a
call into the WorkerPool on the zip stored for the invoked version, so Invoke still passes through
botocore and moto.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fakes import FakeClock
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.awslambda.responses import LambdaResponse

from custom_metrics.backends.aws_lambda import LambdaBackend
from custom_metrics.backends.base import BatchFailedError
from custom_metrics.deploy_trial import TrialFailedError
from custom_metrics.packaging import build_package
from custom_metrics.sandbox import WorkerPool
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

REGION = "us-east-1"
NAME = "custom-metric-qa-sentiment"
FULL = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
HALF = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"
BROKEN = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1 / 0\n"
TASKS = [
    {
        "id": 1,
        "annotations": [
            {"id": 10, "completed_by": "alice", "result": []},
            {"id": 11, "completed_by": "bob", "result": []},
        ],
    }
]


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _sandbox_invoker(pool: WorkerPool, root: Path) -> Any:
    unpack_lock = threading.Lock()

    def invoke(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        code_dir = root / hashlib.sha256(function.code_bytes).hexdigest()
        with unpack_lock:
            if not code_dir.exists():
                with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
                    archive.extractall(code_dir)
        try:
            response = pool.invoke(code_dir, event, float(function.timeout), int(function.memory_size))
        except BatchFailedError as failure:
            return json.dumps({"errorType": "Runtime.Unknown", "errorMessage": failure.message}), True, ""
        return json.dumps(response), False, ""

    return invoke


def _qualifier_aware_get_param(original: Any) -> Any:
    # moto 5.2 reads Invoke's query parameter as "qualifier" while botocore sends "Qualifier", so every
    # invocation would run $LATEST; this reads either spelling.
    def get_param(self: LambdaResponse, name: str, if_none: Any = None) -> Any:
        if name == "qualifier":
            return original(self, "Qualifier", None) or original(self, name, if_none)
        return original(self, name, if_none)

    return get_param


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture
def calls() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pool: WorkerPool, calls: list[tuple[str, dict[str, Any]]]
) -> Iterator[MetricService]:
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", _sandbox_invoker(pool, tmp_path / "code"))
    monkeypatch.setattr(LambdaResponse, "_get_param", _qualifier_aware_get_param(LambdaResponse._get_param))
    with mock_aws():
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="custom-metrics-execution", AssumeRolePolicyDocument="{}"
        )
        client = boto3.client("lambda", region_name=REGION)
        layer = client.publish_layer_version(
            LayerName="custom-metrics-runtime",
            Content={"ZipFile": _zip({"python/custom_metrics_runtime/__init__.py": ""})},
            CompatibleRuntimes=["python3.11"],
        )

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            calls.append((model.name, dict(params)))

        client.meta.events.register("before-parameter-build.lambda", record)
        settings = Settings(
            role_arn=role["Role"]["Arn"], region=REGION, layer_arn=layer["LayerVersionArn"], prefix="qa"
        )
        clock = FakeClock()
        backend = LambdaBackend(
            settings,
            lambda_client=client,
            sleep=clock.sleep,
            clock=clock,
            waiter_delay=0,
            package_fetcher=lambda url: build_package(FULL),
        )
        metric_service = MetricService(backend, default_prefix="qa")
        yield metric_service
        metric_service.close()


def _names(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in calls]


def test_aws_failed_trial_keeps_previous_version(service: MetricService) -> None:
    first = service.put_metric("sentiment", code=FULL)

    with pytest.raises(TrialFailedError) as raised:
        service.put_metric("sentiment", code=BROKEN)
    scored = service.score("sentiment", TASKS)

    assert raised.value.details["version"] == 2
    assert raised.value.details["live_version"] == 1
    assert all("ZeroDivisionError" in line for line in raised.value.details["errors"])
    assert scored["function"]["version"] == 1
    assert scored["function"]["code_sha256"] == first["function"]["code_sha256"]
    assert scored["pairs"][0]["score"] == 1.0


def test_aws_trial_invokes_version_before_alias(
    service: MetricService, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    service.put_metric("sentiment", code=FULL)
    del calls[:]

    service.put_metric("sentiment", code=HALF)

    names = _names(calls)
    trial_invokes = [index for index, (name, params) in enumerate(calls) if name == "Invoke"]
    assert names.index("UpdateFunctionCode") < names.index("PublishVersion")
    assert trial_invokes
    assert all(calls[index][1]["Qualifier"] == "2" for index in trial_invokes)
    assert max(trial_invokes) < names.index("UpdateAlias")


def test_aws_scoring_invokes_live_alias(service: MetricService, calls: list[tuple[str, dict[str, Any]]]) -> None:
    service.put_metric("sentiment", code=FULL)
    del calls[:]

    service.score("sentiment", TASKS)

    assert [params["Qualifier"] for name, params in calls if name == "Invoke"] == ["live"]


def test_aws_redeploy_unchanged_makes_no_update_or_publish(
    service: MetricService, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    service.put_metric("sentiment", code=FULL)
    del calls[:]

    result = service.put_metric("sentiment", code=FULL)

    assert result["result"] == "unchanged"
    assert "UpdateFunctionCode" not in _names(calls)
    assert "UpdateFunctionConfiguration" not in _names(calls)
    assert "PublishVersion" not in _names(calls)
    assert "Invoke" not in _names(calls)


def test_aws_rollback_next_run_uses_rolled_back_code(service: MetricService) -> None:
    first = service.put_metric("sentiment", code=FULL)
    second = service.put_metric("sentiment", code=HALF)
    before = service.score("sentiment", TASKS)

    rolled = service.rollback("sentiment", 1)
    after = service.score("sentiment", TASKS)

    assert before["pairs"][0]["score"] == 0.5
    assert before["function"]["code_sha256"] == second["function"]["code_sha256"]
    assert rolled["previous_version"] == 2
    assert after["pairs"][0]["score"] == 1.0
    assert after["function"]["code_sha256"] == first["function"]["code_sha256"]
    assert after["function"]["version"] == 1


def test_aws_versions_lists_trial_outcomes(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    with pytest.raises(TrialFailedError):
        service.put_metric("sentiment", code=BROKEN)
    service.put_metric("sentiment", code=HALF, force=True)

    listed = service.versions("sentiment")

    assert listed["live_version"] == 3
    assert [(entry["version"], entry["trial"], entry["live"]) for entry in listed["versions"]] == [
        (1, "passed", False),
        (2, "failed", False),
        (3, "skipped", True),
    ]


def test_aws_trials_tag_hidden_from_function_tags(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL, tags={"team": "qa"})

    tags = service.get_metric("sentiment")["function"]["tags"]

    assert "custom-metrics:trials" not in tags
    assert tags["team"] == "qa"


def test_aws_force_after_failed_trial_reuses_version(service: MetricService) -> None:
    service.put_metric("sentiment", code=FULL)
    with pytest.raises(TrialFailedError):
        service.put_metric("sentiment", code=BROKEN)

    forced = service.put_metric("sentiment", code=BROKEN, force=True)

    assert forced["function"]["version"] == "2"
    assert [entry["version"] for entry in service.versions("sentiment")["versions"]] == [1, 2]
