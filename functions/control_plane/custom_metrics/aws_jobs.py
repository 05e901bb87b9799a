"""Agreement jobs on AWS: the export in S3, one Step Functions execution per job, the result in S3.

Keys in the job bucket, all under `jobs/<id>/`:

    job.json      the job's options, function, request id and execution ARN (written by the control plane)
    tasks.json    the export as a JSON array of tasks (inline from the request, or uploaded by the client)
    parts/        one file of pair records per batch of tasks, named `<first task index>-<pairs>-<errors>.json`
    map/          the Distributed Map's ResultWriter output (manifest.json and the result files)
    result.json   the agreement result JSON, written by the aggregation step

The state machine in template.yaml reads tasks.json with the Distributed Map, runs the job-worker Lambda
(`custom_metrics.job_steps.score_batch`) on each batch and the aggregation Lambda last. Progress comes
from the part file names, so a status request costs one ListObjectsV2 call per 1000 batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError

from custom_metrics.backends.aws_client import error_code
from custom_metrics.errors import BackendError, ConfigurationError, InvalidInputError
from custom_metrics.jobs import (
    STATUS_AWAITING_UPLOAD,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_SUCCEEDED,
    JobNotFoundError,
    JobOptions,
    count_payloads,
    job_status,
    new_job_id,
    now_iso,
    require_job_id,
)
from custom_metrics.service import MetricService

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_stepfunctions.client import SFNClient

logger = logging.getLogger(__name__)

BUCKET_VARIABLE = "CUSTOM_METRICS_JOB_BUCKET"
STATE_MACHINE_VARIABLE = "CUSTOM_METRICS_JOB_STATE_MACHINE_ARN"
REGION_VARIABLE = "LS_LAMBDA_REGION_CUSTOM_METRICS"
URL_EXPIRY_VARIABLE = "CUSTOM_METRICS_JOB_URL_EXPIRY"
DEFAULT_URL_EXPIRY_SECONDS = 3600
# Step Functions execution states, mapped to job states; PENDING_REDRIVE waits to run again.
_EXECUTION_STATES = {
    "RUNNING": STATUS_RUNNING,
    "PENDING_REDRIVE": STATUS_RUNNING,
    "SUCCEEDED": STATUS_SUCCEEDED,
    "FAILED": STATUS_FAILED,
    "TIMED_OUT": STATUS_FAILED,
    "ABORTED": STATUS_FAILED,
}
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "ExecutionDoesNotExist"})


@dataclass(frozen=True)
class JobSettings:
    """The bucket that keeps AWS jobs' data and the state machine that runs them."""

    bucket: str
    state_machine_arn: str
    region: str
    url_expiry_seconds: int = DEFAULT_URL_EXPIRY_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        env = os.environ if environ is None else environ
        values = {
            name: env.get(name, "").strip() for name in (BUCKET_VARIABLE, STATE_MACHINE_VARIABLE, REGION_VARIABLE)
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigurationError(
                f"agreement jobs need the settings {', '.join(missing)}; the SAM stack sets them on the control plane"
            )
        expiry = env.get(URL_EXPIRY_VARIABLE, "").strip()
        if expiry and not (expiry.isdigit() and 60 <= int(expiry) <= 604800):
            raise ConfigurationError(
                f"setting {URL_EXPIRY_VARIABLE}={expiry!r} is invalid; set seconds from 60 to 604800"
            )
        return cls(
            bucket=values[BUCKET_VARIABLE],
            state_machine_arn=values[STATE_MACHINE_VARIABLE],
            region=values[REGION_VARIABLE],
            url_expiry_seconds=int(expiry) if expiry else DEFAULT_URL_EXPIRY_SECONDS,
        )


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def part_key(job_id: str, first_index: int, pairs: int, errors: int) -> str:
    """Name a batch's part file so that a listing shows its pair and error counts."""
    return f"{job_prefix(job_id)}parts/{first_index:010d}-{pairs}-{errors}.json"


def make_s3_client(region: str) -> S3Client:
    # Presigned URLs need SigV4 and the regional virtual-host name, which buckets in every region accept.
    config = Config(region_name=region, signature_version="s3v4", s3={"addressing_style": "virtual"})
    return boto3.client("s3", config=config)


class AwsJobs:
    """Creates, starts and reports agreement jobs that run on Step Functions."""

    def __init__(
        self,
        service: MetricService,
        settings: JobSettings,
        *,
        s3_client: S3Client | None = None,
        sfn_client: SFNClient | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._s3 = s3_client or make_s3_client(settings.region)
        self._sfn = sfn_client or boto3.client("stepfunctions", config=Config(region_name=settings.region))

    def create(self, project: str, tasks: Any, options: JobOptions, request_id: str) -> dict[str, Any]:
        name = self.service.function_name(project, options.prefix)
        total = count_payloads(tasks, options) if tasks is not None else None
        info = self.service.active_function(name)
        job_id = new_job_id()
        prefix = job_prefix(job_id)
        job = {
            **job_status(
                job_id,
                project=project,
                function=name,
                status=STATUS_AWAITING_UPLOAD,
                created_at=now_iso(),
                pairs_total=total,
            ),
            "options": options.to_dict(),
            "request_id": request_id,
            "code_sha256": info.code_sha256,
            "function_version": info.version,
            "bucket": self.settings.bucket,
            "tasks_key": f"{prefix}tasks.json",
            "parts_prefix": f"{prefix}parts/",
            "map_prefix": f"{prefix}map",
            "result_key": f"{prefix}result.json",
            "execution_arn": None,
        }
        if tasks is None:
            self._put_json(f"{prefix}job.json", job)
            logger.info("job awaiting upload", extra={"job_id": job_id, "function": name, "request_id": request_id})
            body = _public(job)
            body["upload"] = {
                "url": self._presign("put_object", job["tasks_key"]),
                "method": "PUT",
                "expires_in": self.settings.url_expiry_seconds,
                "then": f"POST /agreement-jobs/{job_id}/start",
            }
            return body
        self._put_json(job["tasks_key"], tasks if isinstance(tasks, list) else [tasks])
        return self._start_execution(job)

    def start(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job["execution_arn"] is not None:
            return self.status(job_id)
        try:
            self._s3.head_object(Bucket=self.settings.bucket, Key=job["tasks_key"])
        except ClientError as error:
            if error_code(error) in _NOT_FOUND_CODES:
                raise InvalidInputError(
                    f"job {job_id} has no uploaded export yet; PUT the export to the upload URL, then start the job"
                ) from error
            raise _s3_error(error, "HeadObject", job["tasks_key"]) from error
        return self._start_execution(job)

    def status(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        body = _public(job)
        if job["execution_arn"] is None:
            return body
        execution = self._describe(job["execution_arn"])
        state = _EXECUTION_STATES.get(execution["status"], STATUS_RUNNING)
        stopped = execution.get("stopDate")
        body.update(status=state, updated_at=stopped.isoformat() if stopped else now_iso())
        if state == STATUS_FAILED:
            body["error"] = _execution_error(execution)
        if state == STATUS_SUCCEEDED:
            output = orjson.loads(execution.get("output") or "{}")
            body["progress"].update(
                pairs_total=output.get("pairs"), pairs_done=output.get("pairs", 0), pairs_failed=output.get("errors", 0)
            )
            body["result_url"] = self._presign("get_object", job["result_key"])
        else:
            done, failed = self._part_counts(job["parts_prefix"])
            body["progress"].update(pairs_done=done, pairs_failed=failed)
        return body

    # Steps ---------------------------------------------------------------------------------

    def _start_execution(self, job: dict[str, Any]) -> dict[str, Any]:
        execution_input = {key: job[key] for key in _EXECUTION_INPUT_KEYS}
        try:
            started = self._sfn.start_execution(
                stateMachineArn=self.settings.state_machine_arn,
                name=job["job_id"],
                input=orjson.dumps(execution_input).decode(),
            )
        except ClientError as error:
            raise BackendError(
                f"could not start the job's state machine execution ({error_code(error)}); "
                "check the stack's state machine and the control plane's policy, then create the job again"
            ) from error
        job.update(execution_arn=started["executionArn"], status=STATUS_RUNNING, updated_at=now_iso())
        self._put_json(f"{job_prefix(job['job_id'])}job.json", job)
        logger.info("job started", extra={"job_id": job["job_id"], "request_id": job["request_id"]})
        return _public(job)

    def _job(self, job_id: str) -> dict[str, Any]:
        key = f"{job_prefix(require_job_id(job_id))}job.json"
        try:
            raw = self._s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in _NOT_FOUND_CODES:
                raise JobNotFoundError(f"no agreement job has the id {job_id}; check the id") from error
            raise _s3_error(error, "GetObject", key) from error
        job: dict[str, Any] = orjson.loads(raw)
        return job

    def _describe(self, execution_arn: str) -> dict[str, Any]:
        try:
            return dict(self._sfn.describe_execution(executionArn=execution_arn))
        except ClientError as error:
            raise BackendError(
                f"could not read the job's execution {execution_arn} ({error_code(error)}); retry in a minute"
            ) from error

    def _part_counts(self, parts_prefix: str) -> tuple[int, int]:
        done = failed = 0
        for key in self._keys(parts_prefix):
            name = key.rsplit("/", 1)[-1].removesuffix(".json")
            _, pairs, errors = name.split("-")
            done += int(pairs)
            failed += int(errors)
        return done, failed

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except ClientError as error:
            raise _s3_error(error, "ListObjectsV2", prefix) from error

    def _put_json(self, key: str, body: Any) -> None:
        try:
            self._s3.put_object(
                Bucket=self.settings.bucket, Key=key, Body=orjson.dumps(body), ContentType="application/json"
            )
        except ClientError as error:
            raise _s3_error(error, "PutObject", key) from error

    def _presign(self, operation: str, key: str) -> str:
        url: str = self._s3.generate_presigned_url(
            operation, Params={"Bucket": self.settings.bucket, "Key": key}, ExpiresIn=self.settings.url_expiry_seconds
        )
        return url


_EXECUTION_INPUT_KEYS = (
    "job_id",
    "project",
    "function",
    "code_sha256",
    "function_version",
    "options",
    "request_id",
    "bucket",
    "tasks_key",
    "parts_prefix",
    "map_prefix",
    "result_key",
)
_PRIVATE_KEYS = frozenset(_EXECUTION_INPUT_KEYS) - {"job_id", "project", "function"} | {"execution_arn"}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    body = {key: value for key, value in job.items() if key not in _PRIVATE_KEYS}
    body["progress"] = dict(job["progress"])
    return body


def _execution_error(execution: Mapping[str, Any]) -> str:
    error = execution.get("error") or execution["status"]
    cause = str(execution.get("cause") or "no cause given")[:1000]
    return f"the job's execution ended {execution['status']} ({error}): {cause}"


def _s3_error(error: ClientError, operation: str, key: str) -> BackendError:
    return BackendError(
        f"{operation} on the job bucket failed for {key} ({error_code(error)}); "
        "check the control plane's policy on the bucket and retry"
    )
