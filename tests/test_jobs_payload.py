"""Payload-aware batching: a pair too large for one invocation gets its own error on both paths."""

from __future__ import annotations

import json
from typing import Any

import boto3
import orjson
import pytest
from aws_fakes import FakeClock, client_error, stubbed_backend
from moto import mock_aws

from custom_metrics import orchestrator
from custom_metrics.backends.base import BatchFailedError
from custom_metrics.job_steps import score_batch
from custom_metrics.jobs import JobOptions

LIMIT_BYTES = 4000


class SmallLimitBackend:
    """Scores every pair 1.0 and accepts batches of at most LIMIT_BYTES serialized bytes."""

    max_concurrency = 2
    max_batch_pairs = 50
    max_batch_bytes = LIMIT_BYTES

    def __init__(self) -> None:
        self.invoked: list[str] = []

    def invoke(self, name: str, payload: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.invoked.extend(pair["id"] for pair in payload["pairs"])
        results = [{"id": pair["id"], "score": 1.0, "per_label": None, "error": None} for pair in payload["pairs"]]
        return {"results": results, "not_run": []}


def annotation(annotation_id: int, text: str) -> dict[str, Any]:
    region = {"from_name": "answer", "to_name": "text", "type": "textarea", "value": {"text": [text]}}
    return {"id": annotation_id, "completed_by": annotation_id, "result": [region]}


def test_orchestrator_oversized_pair_gets_size_error() -> None:
    backend = SmallLimitBackend()
    pairs = [
        {"id": "small", "annotation_1": annotation(1, "ok"), "annotation_2": annotation(2, "ok")},
        {"id": "huge", "annotation_1": annotation(3, "x" * 6000), "annotation_2": annotation(4, "y")},
    ]

    results = orchestrator.score_pairs(backend, "f", pairs, per_label=False, request_id="r", project="p")

    error = results["huge"]["error"]
    assert error["type"] == "PayloadTooLarge"
    assert "bytes serialized, over the limit of" in error["message"]
    assert str(len(orjson.dumps(pairs[1]))) in error["message"]
    assert results["small"]["score"] == 1.0
    assert backend.invoked == ["small"]


def test_job_batch_oversized_pair_gets_size_error(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SmallLimitBackend()
    job = {
        "job_id": "0123456789abcdef0123456789abcdef",
        "project": "p",
        "function": "custom-metric-p",
        "options": JobOptions().to_dict(),
        "request_id": "r",
        "bucket": "jobs-bucket",
    }
    tasks = [
        {"id": 1, "annotations": [annotation(1, "ok"), annotation(2, "ok")]},
        {"id": 2, "annotations": [annotation(3, "x" * 6000), annotation(4, "y")]},
    ]
    batch = {"Items": [{"index": index, "task": task} for index, task in enumerate(tasks)], "BatchInput": {"job": job}}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="jobs-bucket")

        summary = score_batch(batch, backend, s3)

        part = json.loads(s3.get_object(Bucket="jobs-bucket", Key=summary["part"])["Body"].read())
    records = [record for entry in part["tasks"] for record in entry["records"]]
    assert summary["pairs"] == 2
    assert summary["errors"] == 1
    assert records[0]["error"] is None
    assert records[1]["error"]["type"] == "PayloadTooLarge"
    assert (
        f"limit of {LIMIT_BYTES - orchestrator.ENVELOPE_BYTES - len('r') - len('p')}" in records[1]["error"]["message"]
    )


def test_lambda_request_too_large_is_payload_reason() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    client_error(stubber, "invoke", "RequestTooLargeException", status=413, message="Request must be smaller")

    with stubber, pytest.raises(BatchFailedError) as failure:
        backend.invoke(
            "custom-metric-qa-sentiment", {"pairs": [], "per_label": False, "request_id": "r", "project": "p"}
        )

    assert failure.value.reason == "payload_too_large"
    assert "size limit" in failure.value.message


def test_lambda_request_too_large_becomes_pair_error() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    client_error(stubber, "invoke", "RequestTooLargeException", status=413, message="Request must be smaller")
    pairs = [{"id": "0:0", "annotation_1": annotation(1, "a"), "annotation_2": annotation(2, "b")}]

    with stubber:
        results = orchestrator.score_pairs(
            backend, "custom-metric-qa-sentiment", pairs, per_label=False, request_id="r", project="p"
        )

    error = results["0:0"]["error"]
    assert error["type"] == "PayloadTooLarge"
    assert "6 MB invocation limit" in error["message"]
