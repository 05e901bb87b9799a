"""Logs Insights polling (Stubber and moto) and the Lambda backend's settings."""

from __future__ import annotations

import time

import boto3
import pytest
from aws_fakes import REGION, FakeClock
from botocore.stub import Stubber
from moto import mock_aws

from custom_metrics.backends.aws_client import Deadline
from custom_metrics.backends.aws_logs import build_query, query_function_logs
from custom_metrics.errors import BackendError, ConfigurationError, InvalidInputError
from custom_metrics.settings import Settings

NAME = "custom-metric-qa-sentiment"
GROUP = f"/aws/lambda/{NAME}"


def _row(timestamp: str, message: str, request_id: str) -> list[dict[str, str]]:
    return [
        {"field": "@timestamp", "value": timestamp},
        {"field": "@message", "value": message},
        {"field": "@requestId", "value": request_id},
    ]


def _stubbed_logs() -> tuple[object, Stubber]:
    client = boto3.client("logs", region_name=REGION)
    return client, Stubber(client)


def test_logs_polls_until_complete() -> None:
    clock = FakeClock()
    client, stubber = _stubbed_logs()
    stubber.add_response(
        "start_query",
        {"queryId": "q-1"},
        {"logGroupName": GROUP, "startTime": 100, "endTime": 201, "queryString": build_query(10), "limit": 10},
    )
    stubber.add_response("get_query_results", {"status": "Scheduled", "results": []}, {"queryId": "q-1"})
    stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-1"})
    rows = [
        _row("2026-12-04 15:00:02.000", "second\n", "lambda-req-2"),
        _row("2026-12-04 15:00:01.500", "first\n", "lambda-req-1"),
    ]
    stubber.add_response("get_query_results", {"status": "Complete", "results": rows}, {"queryId": "q-1"})

    with stubber:
        result = query_function_logs(
            client, NAME, start=100, end=200, limit=10, deadline=Deadline(5.0, clock), sleep=clock.sleep
        )

    assert [row.message for row in result] == ["first", "second"]
    assert result[0].timestamp == "2026-12-04T15:00:01.500+00:00"
    assert result[0].request_id == "lambda-req-1"
    assert len(clock.sleeps) == 2


def test_logs_query_past_deadline_raises() -> None:
    clock = FakeClock()
    client, stubber = _stubbed_logs()
    stubber.add_response("start_query", {"queryId": "q-1"})
    for _ in range(5):
        stubber.add_response("get_query_results", {"status": "Running", "results": []})

    with stubber, pytest.raises(BackendError) as raised:
        query_function_logs(
            client, NAME, start=100, end=200, limit=10, deadline=Deadline(1.0, clock), sleep=clock.sleep
        )

    assert "did not complete within 1 s" in raised.value.message
    assert sum(clock.sleeps) <= 1.0


def test_logs_failed_query_raises() -> None:
    clock = FakeClock()
    client, stubber = _stubbed_logs()
    stubber.add_response("start_query", {"queryId": "q-1"})
    stubber.add_response("get_query_results", {"status": "Failed", "results": []})

    with stubber, pytest.raises(BackendError) as raised:
        query_function_logs(
            client, NAME, start=100, end=200, limit=10, deadline=Deadline(5.0, clock), sleep=clock.sleep
        )

    assert "Failed" in raised.value.message


def test_logs_missing_log_group_returns_no_rows() -> None:
    clock = FakeClock()
    client, stubber = _stubbed_logs()
    stubber.add_client_error("start_query", service_error_code="ResourceNotFoundException", http_status_code=400)

    with stubber:
        rows = query_function_logs(
            client, NAME, start=100, end=200, limit=10, deadline=Deadline(5.0, clock), sleep=clock.sleep
        )

    assert rows == []


@pytest.mark.parametrize(("start", "end", "limit"), [(200, 100, 10), (100, 200, 0), (100, 200, 10_001)])
def test_logs_invalid_range_rejected(start: float, end: float, limit: int) -> None:
    client, _ = _stubbed_logs()
    clock = FakeClock()

    with pytest.raises(InvalidInputError):
        query_function_logs(
            client, NAME, start=start, end=end, limit=limit, deadline=Deadline(5.0, clock), sleep=clock.sleep
        )


def test_logs_under_moto_returns_events_in_range() -> None:
    now_ms = int(time.time() * 1000)
    with mock_aws():
        client = boto3.client("logs", region_name=REGION)
        client.create_log_group(logGroupName=GROUP)
        client.create_log_stream(logGroupName=GROUP, logStreamName="2026/12/04/[$LATEST]abc")
        client.put_log_events(
            logGroupName=GROUP,
            logStreamName="2026/12/04/[$LATEST]abc",
            logEvents=[
                {"timestamp": now_ms - 120_000, "message": "too early"},
                {"timestamp": now_ms - 30_000, "message": "in range 1"},
                {"timestamp": now_ms - 20_000, "message": "in range 2"},
            ],
        )
        clock = FakeClock()
        rows = query_function_logs(
            client,
            NAME,
            start=now_ms / 1000 - 60,
            end=now_ms / 1000,
            limit=10,
            deadline=Deadline(5.0, clock),
            sleep=clock.sleep,
        )

    assert [row.message for row in rows] == ["in range 1", "in range 2"]


REQUIRED = {
    "LS_LAMBDA_ROLE_CUSTOM_METRICS": "arn:aws:iam::123456789012:role/execution",
    "LS_LAMBDA_REGION_CUSTOM_METRICS": "eu-west-1",
    "CUSTOM_METRICS_RUNTIME_LAYER_ARN": "arn:aws:lambda:eu-west-1:123456789012:layer:runtime:1",
}


def test_settings_reads_required_and_defaults() -> None:
    settings = Settings.from_environment({**REQUIRED, "CUSTOM_METRICS_PREFIX": "qa"})

    assert settings.region == "eu-west-1"
    assert settings.prefix == "qa"
    assert settings.runtime == "python3.11"
    assert settings.timeout == 30


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_settings_missing_required_names_it(missing: str) -> None:
    environ = {key: value for key, value in REQUIRED.items() if key != missing}

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment(environ)

    assert missing in raised.value.message
    assert raised.value.status_code == 500


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CUSTOM_METRICS_TIMEOUT", "ten"), ("CUSTOM_METRICS_MEMORY_SIZE", "64"), ("CUSTOM_METRICS_DEPLOY_DEADLINE", "0")],
)
def test_settings_invalid_value_names_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment({**REQUIRED, variable: value})

    assert variable in raised.value.message
