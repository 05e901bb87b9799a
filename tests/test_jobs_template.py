"""The agreement-job resources of template.yaml: the state machine's shape, the bucket and the grants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template: dict[str, Any] = plain(cfn_yaml.load(str(REPO_ROOT / "template.yaml")))
    return template["Resources"]


@pytest.fixture(scope="module")
def machine(resources: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = resources["AgreementJobStateMachine"]["Properties"]
    return properties


def statements_of(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resource["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
    ]


def test_jobs_template_map_reads_tasks_file_from_s3(machine: dict[str, Any]) -> None:
    scoring = machine["Definition"]["States"]["ScoreBatches"]

    assert scoring["Type"] == "Map"
    assert scoring["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert scoring["ItemReader"]["Resource"].endswith(":states:::s3:getObject")
    assert scoring["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
    assert scoring["ItemReader"]["Parameters"]["Key.$"] == "$.job.tasks_key"


def test_jobs_template_map_batches_items(machine: dict[str, Any]) -> None:
    batcher = machine["Definition"]["States"]["ScoreBatches"]["ItemBatcher"]
    settings = machine["Definition"]["States"]["ReadSettings"]["Parameters"]

    assert batcher["MaxItemsPerBatchPath"] == "$.tasks_per_batch"
    assert settings["tasks_per_batch.$"] == "States.StringToJson('${JobTasksPerBatch}')"
    assert machine["DefinitionSubstitutions"]["JobTasksPerBatch"] == {"Ref": "JobTasksPerBatch"}
    assert batcher["MaxInputBytesPerBatch"] <= 256 * 1024


def test_jobs_template_max_concurrency_from_parameter(machine: dict[str, Any]) -> None:
    states = machine["Definition"]["States"]

    assert states["ScoreBatches"]["MaxConcurrencyPath"] == "$.max_concurrency"
    assert states["ReadSettings"]["Parameters"]["max_concurrency.$"] == "States.StringToJson('${JobMaxConcurrency}')"
    assert machine["DefinitionSubstitutions"]["JobMaxConcurrency"] == {"Ref": "JobMaxConcurrency"}


def test_jobs_template_worker_retries_and_catches(machine: dict[str, Any]) -> None:
    worker = machine["Definition"]["States"]["ScoreBatches"]["ItemProcessor"]["States"]["ScoreBatch"]
    retried = {error for rule in worker["Retry"] for error in rule["ErrorEquals"]}
    caught = {error for rule in worker["Catch"] for error in rule["ErrorEquals"]}

    assert {"Lambda.TooManyRequestsException", "Lambda.ServiceException", "States.Timeout"} <= retried
    assert "States.ALL" in caught
    assert worker["Parameters"]["FunctionName"] == "${JobWorkerFunctionArn}"
    assert machine["DefinitionSubstitutions"]["JobWorkerFunctionArn"] == {"Fn::GetAtt": ["JobWorkerFunction", "Arn"]}


def test_jobs_template_results_to_s3_then_aggregate(machine: dict[str, Any]) -> None:
    states = machine["Definition"]["States"]
    writer = states["ScoreBatches"]["ResultWriter"]

    assert writer["Resource"].endswith(":states:::s3:putObject")
    assert writer["Parameters"]["Bucket.$"] == "$.job.bucket"
    assert states["ScoreBatches"]["Next"] == "Aggregate"
    assert states["Aggregate"]["Parameters"]["FunctionName"] == "${JobAggregateFunctionArn}"
    assert states["Aggregate"]["End"] is True


def test_jobs_template_handlers_exist(resources: dict[str, Any]) -> None:
    for name in ("JobWorkerFunction", "JobAggregateFunction"):
        module, function = resources[name]["Properties"]["Handler"].split(".")
        source = (REPO_ROOT / resources[name]["Properties"]["CodeUri"] / f"{module}.py").read_text("utf-8")

        assert f"def {function}(" in source, name


def test_jobs_template_bucket_is_private_encrypted_and_expires(resources: dict[str, Any]) -> None:
    bucket = resources["JobBucket"]["Properties"]
    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    rule = bucket["LifecycleConfiguration"]["Rules"][0]

    assert encryption["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == {"Ref": "JobDataRetentionDays"}


def test_jobs_template_bucket_denies_plain_http(resources: dict[str, Any]) -> None:
    (statement,) = resources["JobBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]

    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_jobs_template_control_plane_job_grants_are_scoped(resources: dict[str, Any]) -> None:
    grants = {
        action: statement["Resource"]
        for statement in statements_of(resources["ControlPlaneFunction"])
        for action in statement["Action"]
        if action.split(":")[0] in ("states", "s3")
    }

    assert grants == {
        "states:StartExecution": {"Ref": "AgreementJobStateMachine"},
        "states:DescribeExecution": {
            "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
            "${AgreementJobStateMachine.Name}:*"
        },
        "s3:GetObject": {"Fn::Sub": "${JobBucket.Arn}/jobs/*"},
        "s3:PutObject": {"Fn::Sub": "${JobBucket.Arn}/jobs/*"},
        "s3:ListBucket": {"Fn::GetAtt": ["JobBucket", "Arn"]},
    }


def test_jobs_template_worker_invokes_only_metric_functions(resources: dict[str, Any]) -> None:
    invoke = [
        statement["Resource"]
        for statement in statements_of(resources["JobWorkerFunction"])
        if "lambda:InvokeFunction" in statement["Action"]
    ]

    assert invoke == [
        {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:custom-metric-*"}
    ]
