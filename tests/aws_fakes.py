"""Test doubles shared by the Lambda backend tests: a fake clock, stubbed clients, canned responses."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber

from custom_metrics.backends.aws_lambda import RUNTIME_HANDLER, LambdaBackend
from custom_metrics.backends.base import LIVE_ALIAS, FunctionSpec
from custom_metrics.naming import managed_tags
from custom_metrics.packaging import build_package, code_sha256
from custom_metrics.settings import Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/custom-metrics-execution"
LAYER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:custom-metrics-runtime:3"
SOURCE = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
OTHER_SOURCE = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"


@dataclass
class FakeClock:
    """A monotonic clock that only moves when `sleep` is called; records every sleep."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "role_arn": ROLE_ARN,
        "region": REGION,
        "layer_arn": LAYER_ARN,
        "deploy_deadline_seconds": 20.0,
        "logs_deadline_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


def spec(name: str = "custom-metric-qa-sentiment", source: str = SOURCE, **overrides: Any) -> FunctionSpec:
    package = build_package(source)
    values: dict[str, Any] = {
        "name": name,
        "project": "sentiment",
        "package": package,
        "code_sha256": code_sha256(package),
        "source": source,
        "tags": {"team": "annotation-quality", **managed_tags("sentiment")},
        "timeout": 30,
        "memory_size": 1024,
    }
    values.update(overrides)
    return FunctionSpec(**values)


def stubbed_backend(clock: FakeClock, **setting_overrides: Any) -> tuple[LambdaBackend, Stubber]:
    client = boto3.client("lambda", region_name=REGION)
    stubber = Stubber(client)
    backend = LambdaBackend(
        settings(**setting_overrides),
        lambda_client=client,
        sleep=clock.sleep,
        clock=clock,
        wall_clock=clock,
        rng=lambda: 1.0,
        waiter_delay=0,
        package_fetcher=lambda url: build_package(SOURCE),
    )
    return backend, stubber


def configuration(
    name: str = "custom-metric-qa-sentiment",
    *,
    sha: str | None = None,
    state: str = "Active",
    update: str = "Successful",
    memory: int = 1024,
    timeout: int = 30,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "Runtime": "python3.11",
        "Role": ROLE_ARN,
        "Handler": RUNTIME_HANDLER,
        "CodeSha256": sha if sha is not None else spec(name).code_sha256,
        "Timeout": timeout,
        "MemorySize": memory,
        "LastModified": "2026-12-04T15:00:00.000+0000",
        "Layers": [{"Arn": LAYER_ARN, "CodeSize": 100}],
        "State": state,
        "LastUpdateStatus": update,
    }
    body.update(extra)
    return body


def get_function_response(tags: dict[str, str] | None = None, **config: Any) -> dict[str, Any]:
    return {
        "Configuration": configuration(**config),
        "Code": {"RepositoryType": "S3", "Location": "https://example.invalid/package.zip"},
        "Tags": tags if tags is not None else dict(spec().tags),
    }


def version_response(version: str = "1", **config: Any) -> dict[str, Any]:
    """GetFunction on a version or on the `live` alias: that version's configuration and package, no tags."""
    return {
        "Configuration": configuration(Version=version, **config),
        "Code": {"RepositoryType": "S3", "Location": f"https://example.invalid/package-v{version}.zip"},
    }


def client_error(stubber: Stubber, method: str, code: str, status: int = 400, message: str = "") -> None:
    stubber.add_client_error(method, service_error_code=code, service_message=message or code, http_status_code=status)


def expect_get(
    stubber: Stubber,
    latest: dict[str, Any],
    live: dict[str, Any] | None,
    name: str = "custom-metric-qa-sentiment",
) -> None:
    """Queue the two reads that deploy, get and list start with: GetFunction on $LATEST, then on `live`.

    A `live` of None queues ResourceNotFoundException, which Lambda returns while the alias does not exist.
    """
    stubber.add_response("get_function", latest, {"FunctionName": name})
    if live is None:
        stubber.add_client_error(
            "get_function",
            service_error_code="ResourceNotFoundException",
            http_status_code=404,
            expected_params={"FunctionName": name, "Qualifier": LIVE_ALIAS},
        )
    else:
        stubber.add_response("get_function", live, {"FunctionName": name, "Qualifier": LIVE_ALIAS})


def payload_stream(body: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(body), len(body))
