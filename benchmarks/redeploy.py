"""AWS calls made by redeploying unchanged code through the Lambda backend, under moto.

Deploys a metric through MetricService on a LambdaBackend whose Lambda client is served by moto (fake
credentials, no network), then deploys the same code and configuration again. A botocore `before-call`
hook records every Lambda API operation. The script prints the operations of each deploy and whether
the second one called UpdateFunctionCode or PublishVersion (target: neither). A third deploy with
changed code shows that the hook does see those two operations when a deploy makes them.

The first and third deploys use `force`, which skips the trial run: moto would need Docker to run the metric's
code, and the trial is not what this script measures.

    .venv/bin/python benchmarks/redeploy.py
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import Counter
from typing import Any

# Set before boto3 is imported, so that no client finds real credentials or queries the EC2 metadata service.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)

import boto3
from moto import mock_aws
from moto.awslambda.models import lambda_backends

from custom_metrics.backends.aws_lambda import LambdaBackend
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id
PROJECT = "sentiment"
SOURCE = '''
def agreement(annotation_1, annotation_2, per_label=False):
    """Score 1 when both annotations select the same choices, else 0."""
    def choices(annotation):
        return sorted(
            tuple(result["value"]["choices"]) for result in annotation["result"] if result["type"] == "choices"
        )

    return 1.0 if choices(annotation_1) == choices(annotation_2) else 0.0
'''
CHANGED_SOURCE = SOURCE.replace("else 0.0", "else 0.25")
WATCHED_OPERATIONS = ("UpdateFunctionCode", "PublishVersion")


def create_role_and_layer() -> Settings:
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
        Content={"ZipFile": zip_files({"python/custom_metrics_runtime/__init__.py": ""})},
        CompatibleRuntimes=["python3.11"],
    )
    return Settings(role_arn=role["Role"]["Arn"], region=REGION, layer_arn=layer["LayerVersionArn"])


def zip_files(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def moto_package(url: str) -> bytes:
    """Return the zip that moto stores for the function whose GetFunction Code.Location is `url`."""
    for function in lambda_backends[ACCOUNT][REGION]._lambdas.all():
        if function.get_code()["Code"]["Location"] == url:
            code: bytes = function.code_bytes
            return code
    raise OSError(f"no moto function has the package location {url}")


def deploy(service: MetricService, calls: list[str], source: str, *, force: bool) -> tuple[dict[str, Any], list[str]]:
    calls.clear()
    body = service.put_metric(PROJECT, code=source, tags={"team": "annotation-quality"}, force=force)
    return body, list(calls)


def describe(label: str, body: dict[str, Any], operations: list[str]) -> None:
    counts = Counter(operations)
    listed = ", ".join(f"{name} x{count}" if count > 1 else name for name, count in counts.items())
    print(f"{label}: {body['result']} ({body['message']})")
    print(f"  {len(operations)} Lambda calls: {listed}")


def main() -> None:
    with mock_aws():
        settings = create_role_and_layer()
        client = boto3.client("lambda", region_name=REGION)
        calls: list[str] = []
        client.meta.events.register("before-call.lambda", lambda model, **_: calls.append(model.name))
        backend = LambdaBackend(settings, lambda_client=client, package_fetcher=moto_package, waiter_delay=0)
        service = MetricService(backend)
        try:
            first, first_calls = deploy(service, calls, SOURCE, force=True)
            second, second_calls = deploy(service, calls, SOURCE, force=False)
            third, third_calls = deploy(service, calls, CHANGED_SOURCE, force=True)
        finally:
            service.close()
    describe("first deploy", first, first_calls)
    describe("redeploy of unchanged code", second, second_calls)
    for operation in WATCHED_OPERATIONS:
        called = operation in second_calls
        print(f"  {operation} in redeploy: {'yes (target missed)' if called else 'no (target met)'}")
    describe("deploy of changed code, for comparison", third, third_calls)
    for operation in WATCHED_OPERATIONS:
        print(f"  {operation} in changed deploy: {'yes' if operation in third_calls else 'no'}")


if __name__ == "__main__":
    main()
