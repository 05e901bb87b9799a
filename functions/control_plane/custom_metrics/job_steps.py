"""The two Lambda steps of an AWS agreement job: score one batch of tasks, then aggregate every batch.

`score_batch` receives one ItemBatcher batch from the Distributed Map:

    {"Items": [{"index": int, "task": {...}}, ...], "BatchInput": {"job": {...execution input...}}}

and scores the pairs of those tasks with the same orchestrator as the synchronous route (the metric
function is invoked through its `live` alias). It writes the pair records of each task to one part file
in the job bucket and returns the part's key and counts, which the ResultWriter stores in S3.

`aggregate_job` reads the ResultWriter's manifest, the part files it lists, and the batches that failed
(their pairs get an error each), then writes the same result JSON as the synchronous route.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from custom_metrics import orchestrator
from custom_metrics.aws_jobs import part_key
from custom_metrics.backends.aws_client import error_code
from custom_metrics.errors import BackendError, InvalidInputError
from custom_metrics.jobs import JobOptions
from custom_metrics.orchestrator import ScoringBackend
from custom_metrics.results import agreement_result, pair_payloads, pair_records
from custom_metrics.tasks import Export, Pair, Task, build_pairs, export_warnings, parse_task

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

# The error type that a failed batch gives to each of its pairs.
BATCH_FAILED = "JobBatchFailed"
# Step Functions names a Lambda error by its exception class; this one means the export itself is malformed.
INVALID_EXPORT_ERROR = "InvalidInputError"


def score_batch(event: dict[str, Any], backend: ScoringBackend, s3: S3Client) -> dict[str, Any]:
    """Score the batch's tasks, write their pair records to a part file, and return its key and counts."""
    job = event["BatchInput"]["job"]
    options = JobOptions.from_dict(job["options"])
    parsed = [_task_pairs(item, options) for item in event["Items"]]
    pairs = [pair for _, pair_list, _ in parsed for pair in pair_list]
    results = orchestrator.score_pairs(
        backend,
        job["function"],
        pair_payloads(pairs, per_control=options.per_control),
        per_label=options.per_label,
        request_id=job["request_id"],
        project=job["project"],
    )
    entries = [_entry(task, pair_list, results, warnings, options) for task, pair_list, warnings in parsed]
    pair_count = sum(len(entry["records"]) for entry in entries)
    errors = sum(1 for entry in entries for record in entry["records"] if record["error"] is not None)
    first_index = min((task.index for task, _, _ in parsed), default=0)
    key = part_key(job["job_id"], first_index, pair_count, errors)
    _put(s3, job["bucket"], key, {"tasks": entries})
    logger.info(
        "batch scored",
        extra={"job_id": job["job_id"], "request_id": job["request_id"], "pairs": pair_count, "errors": errors},
    )
    return {"part": key, "tasks": len(entries), "pairs": pair_count, "errors": errors}


def aggregate_job(event: dict[str, Any], s3: S3Client) -> dict[str, Any]:
    """Aggregate every batch listed in the ResultWriter manifest into the result JSON and store it."""
    job = event["job"]
    options = JobOptions.from_dict(job["options"])
    details = event["map"]["ResultWriterDetails"]
    manifest = _get(s3, details["Bucket"], details["Key"])
    entries: list[dict[str, Any]] = []
    for status in ("SUCCEEDED", "FAILED"):
        for result_file in manifest.get("ResultFiles", {}).get(status, []):
            for execution in _get(s3, manifest["DestinationBucket"], result_file["Key"]):
                entries.extend(_execution_entries(execution, job, options, s3))
    entries.sort(key=lambda entry: entry["index"])
    records = [record for entry in entries for record in entry["records"]]
    summaries = [Task(key=entry["key"], index=entry["index"], **entry.get("summary", {})) for entry in entries]
    warnings = [warning for entry in entries for warning in entry["warnings"]]
    result = agreement_result(
        [entry["key"] for entry in entries],
        records,
        function_name=job["function"],
        code_sha256=job["code_sha256"],
        pair_mode=options.pairs,
        per_label=options.per_label,
        per_control=options.per_control,
        request_id=job["request_id"],
        warnings=[*warnings, *export_warnings(summaries, options.pairs)],
        function_version=job.get("function_version"),
    )
    _put(s3, job["bucket"], job["result_key"], result)
    logger.info("job aggregated", extra={"job_id": job["job_id"], "pairs": len(records), "errors": result["errors"]})
    return {"result_key": job["result_key"], "tasks": len(entries), "pairs": len(records), "errors": result["errors"]}


def _task_pairs(item: dict[str, Any], options: JobOptions) -> tuple[Task, list[Pair], list[str]]:
    """Parse one task at its position in the export, so that its pair ids and key match the synchronous route."""
    warnings: list[str] = []
    # parse_export's own per-task parser; parse_export itself would number a lone task 0.
    task = parse_task(item["task"], int(item["index"]), warnings)
    pairs = build_pairs(Export(tasks=[task]), options.pairs)
    return task, pairs, warnings


def _entry(
    task: Task, pairs: list[Pair], results: dict[str, Any], warnings: list[str], options: JobOptions
) -> dict[str, Any]:
    records = pair_records(pairs, results, per_control=options.per_control)
    return {"index": task.index, "key": task.key, "summary": task.summary(), "records": records, "warnings": warnings}


def _execution_entries(
    execution: dict[str, Any], job: dict[str, Any], options: JobOptions, s3: S3Client
) -> list[dict[str, Any]]:
    """Return the task entries of one child execution: its part file, or error records for a failed batch."""
    output = orjson.loads(execution["Output"]) if execution.get("Status") == "SUCCEEDED" else None
    if output is not None and not output.get("failed"):
        part: list[dict[str, Any]] = _get(s3, job["bucket"], output["part"])["tasks"]
        return part
    if output is not None:
        error, cause, items = str(output.get("error")), str(output.get("cause")), output["items"]
    else:
        error = str(execution.get("Error") or execution.get("Status"))
        cause = str(execution.get("Cause") or "no cause given")
        items = orjson.loads(execution["Input"])["Items"]
    if error == INVALID_EXPORT_ERROR:
        raise InvalidInputError(f"the export is malformed: {_error_message(cause)}")
    logger.warning("batch failed", extra={"job_id": job["job_id"], "error": error, "tasks": len(items)})
    message = (
        f"the job's batch of tasks with this pair failed ({error}): {_error_message(cause)[:500]}; run the job again"
    )
    return [_failed_entry(item, options, message) for item in items]


def _failed_entry(item: dict[str, Any], options: JobOptions, message: str) -> dict[str, Any]:
    task, pairs, warnings = _task_pairs(item, options)
    payloads = pair_payloads(pairs, per_control=options.per_control)
    results = {payload["id"]: orchestrator.error_result(payload["id"], BATCH_FAILED, message) for payload in payloads}
    return _entry(task, pairs, results, warnings, options)


def _error_message(cause: str) -> str:
    """Return the errorMessage of a Lambda error cause (a JSON object), else the cause itself."""
    try:
        parsed = orjson.loads(cause)
    except orjson.JSONDecodeError:
        return cause
    return str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause


def _get(s3: S3Client, bucket: str, key: str) -> Any:
    try:
        return orjson.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        raise BackendError(
            f"GetObject s3://{bucket}/{key} failed ({error_code(error)}) while running the job"
        ) from error


def _put(s3: S3Client, bucket: str, key: str, body: Any) -> None:
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(body), ContentType="application/json")
    except ClientError as error:
        raise BackendError(
            f"PutObject s3://{bucket}/{key} failed ({error_code(error)}) while running the job"
        ) from error
