"""Agreement jobs on AWS under moto (S3, Step Functions): the routes, the status mapping and both job steps.

moto records a started execution but never runs it, so the job steps are called directly: the worker on
batches shaped like the Distributed Map's, scoring through the local sandbox, and the aggregation step on
ResultWriter files written to moto's S3.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from custom_metrics.api.app import build_resolver
from custom_metrics.aws_jobs import AwsJobs, JobSettings, part_key
from custom_metrics.backends.base import FunctionInfo
from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import InvalidInputError
from custom_metrics.job_steps import aggregate_job, score_batch
from custom_metrics.jobs import JobOptions
from custom_metrics.service import MetricService

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "custom-metrics-jobs-test"
FUNCTION = "custom-metric-qa-sentiment"
SHA = "c2hhMjU2LW9mLXRoZS1wYWNrYWdl"
EXACT_MATCH = (
    "def agreement(annotation_1, annotation_2, per_label=False):\n"
    "    return 1.0 if annotation_1['result'] == annotation_2['result'] else 0.0\n"
)


class ActiveBackend:
    """A backend whose only function is Active; the job routes need nothing else from it."""

    kind = "fake"
    max_concurrency = 1
    max_batch_pairs = 10
    max_batch_bytes = 6 * 1024 * 1024

    def get(self, name: str) -> FunctionInfo:
        return FunctionInfo(
            name=name,
            status="Active",
            code_sha256=SHA,
            tags={},
            last_modified="",
            timeout=30,
            memory_size=1024,
            version="1",
        )


class LambdaContext:
    function_name = "custom-metrics-ControlPlaneFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:custom-metrics-ControlPlaneFunction"
    aws_request_id = "6f1c1c2e-0000-4000-8000-000000000002"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


def choices_task(task_id: int, *choices: str) -> dict[str, Any]:
    annotations = []
    for number, choice in enumerate(choices):
        region = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}
        annotations.append({"id": task_id * 10 + number, "completed_by": number + 1, "result": [region]})
    return {"id": task_id, "annotations": annotations}


TASKS = [
    choices_task(1, "a", "a", "b"),
    choices_task(2, "b", "b"),
    choices_task(3, "a"),
    {"annotations": [choices_task(4, "c")["annotations"][0], choices_task(4, "c")["annotations"][0]]},
    choices_task(5, "a", "b", "a", "a"),
]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", region_name=REGION)
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}}]}
        role = iam.create_role(RoleName="jobs", AssumeRolePolicyDocument=json.dumps(trust))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="custom-metrics-agreement-jobs",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn=role["Role"]["Arn"],
        )
        monkeypatch.setenv("CUSTOM_METRICS_JOB_BUCKET", BUCKET)
        monkeypatch.setenv("CUSTOM_METRICS_JOB_STATE_MACHINE_ARN", machine["stateMachineArn"])
        monkeypatch.setenv("LS_LAMBDA_REGION_CUSTOM_METRICS", REGION)
        yield {"s3": s3, "sfn": sfn, "state_machine_arn": machine["stateMachineArn"]}


@pytest.fixture
def resolver(aws: dict[str, Any]) -> Any:
    service = MetricService(ActiveBackend(), default_prefix="qa")  # type: ignore[arg-type]
    return build_resolver(lambda: service)


def call(resolver: Any, name: str, **changes: Any) -> tuple[int, dict[str, Any]]:
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text("utf-8"))
    event.update(changes)
    response = resolver.resolve(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def get_json(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def job_path(job_id: str, suffix: str = "") -> dict[str, Any]:
    return {"path": f"/agreement-jobs/{job_id}{suffix}", "pathParameters": {"job_id": job_id}}


# Routes --------------------------------------------------------------------------------------------


def test_jobs_aws_create_inline_starts_execution(resolver: Any, aws: dict[str, Any]) -> None:
    status_code, body = call(resolver, "create_agreement_job")

    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    execution_input = json.loads(aws["sfn"].describe_execution(executionArn=executions[0]["executionArn"])["input"])
    request = json.loads(json.loads((EVENTS_DIR / "create_agreement_job.json").read_text())["body"])
    assert status_code == 202, body
    assert body["status"] == "running"
    assert body["function"] == FUNCTION
    assert body["progress"] == {"pairs_total": 7, "pairs_done": 0, "pairs_failed": 0}
    assert [execution["name"] for execution in executions] == [body["job_id"]]
    assert execution_input["tasks_key"] == f"jobs/{body['job_id']}/tasks.json"
    assert execution_input["code_sha256"] == SHA
    assert execution_input["options"]["per_label"] is True
    assert execution_input["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbe01"
    assert get_json(aws["s3"], execution_input["tasks_key"]) == request["tasks"]


def test_jobs_aws_create_without_tasks_returns_upload_url(resolver: Any, aws: dict[str, Any]) -> None:
    status_code, body = call(resolver, "create_agreement_job", body=json.dumps({"pairs": "all"}))

    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    assert status_code == 202, body
    assert body["status"] == "awaiting_upload"
    assert body["progress"]["pairs_total"] is None
    assert body["upload"]["method"] == "PUT"
    assert f"jobs/{body['job_id']}/tasks.json" in body["upload"]["url"]
    assert "X-Amz-Signature=" in body["upload"]["url"]
    assert body["upload"]["url"].startswith("https://")
    assert executions == []


def test_jobs_aws_start_after_upload(resolver: Any, aws: dict[str, Any]) -> None:
    _, created = call(resolver, "create_agreement_job", body=json.dumps({}))
    job_id = created["job_id"]

    early_status, early = call(resolver, "start_agreement_job", **job_path(job_id, "/start"))
    aws["s3"].put_object(Bucket=BUCKET, Key=f"jobs/{job_id}/tasks.json", Body=json.dumps(TASKS).encode())
    status_code, started = call(resolver, "start_agreement_job", **job_path(job_id, "/start"))
    _, again = call(resolver, "start_agreement_job", **job_path(job_id, "/start"))

    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    assert early_status == 400
    assert "upload" in early["message"]
    assert status_code == 202, started
    assert started["status"] == "running"
    assert again["status"] == "running"
    assert len(executions) == 1


def test_jobs_aws_status_running_counts_parts(resolver: Any, aws: dict[str, Any]) -> None:
    _, created = call(resolver, "create_agreement_job")
    job_id = created["job_id"]
    for first_index, pairs, errors in ((0, 3, 1), (1, 1, 0)):
        aws["s3"].put_object(Bucket=BUCKET, Key=part_key(job_id, first_index, pairs, errors), Body=b"{}")

    status_code, body = call(resolver, "get_agreement_job", **job_path(job_id))

    assert status_code == 200, body
    assert body["status"] == "running"
    assert body["progress"] == {"pairs_total": 7, "pairs_done": 4, "pairs_failed": 1}
    assert body["result_url"] is None
    assert "execution_arn" not in body


def test_jobs_aws_status_unknown_job_is_404(resolver: Any) -> None:
    status_code, body = call(resolver, "get_agreement_job")

    assert status_code == 404
    assert "3f2c9a7e5b1d4c8e9f0a1b2c3d4e5f60" in body["message"]


def test_jobs_aws_status_rejects_malformed_id(resolver: Any) -> None:
    status_code, _ = call(resolver, "get_agreement_job", **job_path("..%2Fsecrets"))

    assert status_code == 404


@pytest.mark.parametrize(
    ("execution_status", "expected"),
    [("RUNNING", "running"), ("SUCCEEDED", "succeeded"), ("FAILED", "failed"), ("TIMED_OUT", "failed")],
)
def test_jobs_aws_status_maps_execution_state(aws: dict[str, Any], execution_status: str, expected: str) -> None:
    service = MetricService(ActiveBackend())  # type: ignore[arg-type]
    settings = JobSettings.from_environment()
    creator = AwsJobs(service, settings, s3_client=aws["s3"])
    job_id = creator.create("p", TASKS, JobOptions(), "request-3")["job_id"]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    stubber = Stubber(sfn)
    described: dict[str, Any] = {
        "executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:m:{job_id}",
        "stateMachineArn": settings.state_machine_arn,
        "status": execution_status,
        "startDate": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    }
    if execution_status == "SUCCEEDED":
        described["output"] = json.dumps({"pairs": 10, "errors": 2, "tasks": 5})
        described["stopDate"] = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.UTC)
    if execution_status == "FAILED":
        described.update(error="InvalidInputError", cause='{"errorMessage": "task 3 is malformed"}')
    stubber.add_response("describe_execution", described)

    with stubber:
        status = AwsJobs(service, settings, s3_client=aws["s3"], sfn_client=sfn).status(job_id)

    assert status["status"] == expected
    if expected == "succeeded":
        assert status["progress"] == {"pairs_total": 10, "pairs_done": 10, "pairs_failed": 2}
        assert f"jobs/{job_id}/result.json" in status["result_url"]
    if execution_status == "FAILED":
        assert "task 3 is malformed" in status["error"]
    if execution_status == "TIMED_OUT":
        assert "TIMED_OUT" in status["error"]


def test_jobs_aws_settings_name_missing_variables() -> None:
    with pytest.raises(Exception, match="CUSTOM_METRICS_JOB_BUCKET"):
        JobSettings.from_environment({"LS_LAMBDA_REGION_CUSTOM_METRICS": REGION})


# Job steps -----------------------------------------------------------------------------------------


@pytest.fixture
def local_service(tmp_path: Path) -> Iterator[MetricService]:
    service = MetricService(LocalBackend(tmp_path / "state", workers=2), default_prefix="qa")
    service.put_metric("sentiment", code=EXACT_MATCH)
    yield service
    service.close()


def job_input(service: MetricService, options: JobOptions) -> dict[str, Any]:
    job_id = "0123456789abcdef0123456789abcdef"
    return {
        "job_id": job_id,
        "project": "sentiment",
        "function": FUNCTION,
        "code_sha256": service.backend.get(FUNCTION).code_sha256,
        "function_version": service.backend.get(FUNCTION).version,
        "options": options.to_dict(),
        "request_id": "request-4",
        "bucket": BUCKET,
        "tasks_key": f"jobs/{job_id}/tasks.json",
        "parts_prefix": f"jobs/{job_id}/parts/",
        "map_prefix": f"jobs/{job_id}/map",
        "result_key": f"jobs/{job_id}/result.json",
    }


def batches(tasks: list[Any], size: int, job: dict[str, Any]) -> list[dict[str, Any]]:
    items = [{"index": index, "task": task} for index, task in enumerate(tasks)]
    return [{"Items": items[start : start + size], "BatchInput": {"job": job}} for start in range(0, len(items), size)]


def write_result_writer_output(s3: Any, job: dict[str, Any], executions: list[dict[str, Any]]) -> dict[str, Any]:
    """Store child executions as the ResultWriter does and return the Map state's output."""
    prefix = f"{job['map_prefix']}/run-1"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/SUCCEEDED_0.json", Body=json.dumps(executions).encode())
    manifest = {
        "DestinationBucket": BUCKET,
        "MapRunArn": f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:m/ScoreBatches:run-1",
        "ResultFiles": {"FAILED": [], "PENDING": [], "SUCCEEDED": [{"Key": f"{prefix}/SUCCEEDED_0.json", "Size": 1}]},
    }
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
    return {
        "MapRunArn": manifest["MapRunArn"],
        "ResultWriterDetails": {"Bucket": BUCKET, "Key": f"{prefix}/manifest.json"},
    }


def succeeded(batch: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    return {"Status": "SUCCEEDED", "Input": json.dumps(batch), "Output": json.dumps(output)}


@pytest.mark.parametrize("options", [JobOptions(per_label=True), JobOptions(per_control=True, pairs="all")])
def test_jobs_aws_steps_match_sync_result(
    aws: dict[str, Any], local_service: MetricService, options: JobOptions
) -> None:
    job = job_input(local_service, options)
    # The batches arrive out of order, as child executions finish in any order.
    outputs = [
        succeeded(batch, score_batch(batch, local_service.backend, aws["s3"])) for batch in batches(TASKS, 2, job)
    ]
    map_output = write_result_writer_output(aws["s3"], job, outputs[::-1])

    summary = aggregate_job({"job": job, "map": map_output}, aws["s3"])

    result = get_json(aws["s3"], job["result_key"])
    expected = local_service.score(
        "sentiment",
        TASKS,
        per_label=options.per_label,
        per_control=options.per_control,
        pairs=options.pairs,
        request_id="request-4",
    )
    assert result == expected
    assert summary["pairs"] == len(expected["pairs"])
    assert summary["tasks"] == len(TASKS)


def test_jobs_aws_steps_failed_batch_becomes_pair_errors(aws: dict[str, Any], local_service: MetricService) -> None:
    job = job_input(local_service, JobOptions())
    first, second, third = batches(TASKS, 2, job)
    caught = {
        "failed": True,
        "error": "Lambda.TooManyRequestsException",
        "cause": "Rate exceeded",
        "items": second["Items"],
    }
    outputs = [
        succeeded(first, score_batch(first, local_service.backend, aws["s3"])),
        succeeded(second, caught),
        {"Status": "FAILED", "Input": json.dumps(third), "Error": "States.Timeout", "Cause": "the task timed out"},
    ]
    map_output = write_result_writer_output(aws["s3"], job, outputs)

    summary = aggregate_job({"job": job, "map": map_output}, aws["s3"])

    result = get_json(aws["s3"], job["result_key"])
    by_task = {record["task"]: record for record in result["pairs"]}
    assert [task["task"] for task in result["tasks"]] == [1, 2, 3, 3, 5]
    assert by_task[3]["error"]["type"] == "JobBatchFailed"
    assert "Lambda.TooManyRequestsException" in by_task[3]["error"]["message"]
    assert "States.Timeout" in by_task[5]["error"]["message"]
    assert by_task[1]["error"] is None
    assert summary["errors"] == 1 + 6


def test_jobs_aws_worker_rejects_malformed_task(aws: dict[str, Any], local_service: MetricService) -> None:
    job = job_input(local_service, JobOptions())
    batch = {"Items": [{"index": 0, "task": {"annotations": "none"}}], "BatchInput": {"job": job}}

    with pytest.raises(InvalidInputError, match="annotations"):
        score_batch(batch, local_service.backend, aws["s3"])


def test_jobs_aws_aggregate_fails_on_malformed_export(aws: dict[str, Any], local_service: MetricService) -> None:
    job = job_input(local_service, JobOptions())
    (batch,) = batches(TASKS[:1], 2, job)
    cause = json.dumps({"errorMessage": "task 1: `annotations` is a JSON string, expected a list"})
    caught = {"failed": True, "error": "InvalidInputError", "cause": cause, "items": batch["Items"]}
    map_output = write_result_writer_output(aws["s3"], job, [succeeded(batch, caught)])

    with pytest.raises(InvalidInputError, match="expected a list"):
        aggregate_job({"job": job, "map": map_output}, aws["s3"])
