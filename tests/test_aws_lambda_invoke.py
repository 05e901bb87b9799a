"""Invocation on the Lambda backend against botocore's Stubber: results, FunctionError, throttling."""

from __future__ import annotations

import json

import pytest
from aws_fakes import FakeClock, client_error, payload_stream, stubbed_backend
from botocore.exceptions import ClientError
from botocore.stub import ANY

from custom_metrics import orchestrator
from custom_metrics.backends.aws_client import LambdaParameterError, translate_client_error
from custom_metrics.backends.base import BatchFailedError, ThrottledError
from custom_metrics.errors import BackendError, ConflictError, FunctionNotFoundError, PayloadTooLargeError

NAME = "custom-metric-qa-sentiment"
PAYLOAD = {
    "pairs": [{"id": "1:10:11", "annotation_1": {"result": []}, "annotation_2": {"result": []}}],
    "per_label": False,
    "request_id": "req-1",
    "project": "sentiment",
}
RESULT = {"results": [{"id": "1:10:11", "score": 1.0, "per_label": None, "error": None}], "not_run": []}


def _invoke_response(body: dict[str, object], function_error: str | None = None) -> dict[str, object]:
    raw = json.dumps(body).encode()
    response: dict[str, object] = {"StatusCode": 200, "Payload": payload_stream(raw), "ExecutedVersion": "$LATEST"}
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_invoke_returns_runtime_response() -> None:
    recorded: list[tuple[str, int]] = []
    backend, stubber = stubbed_backend(FakeClock())
    backend._metrics = lambda name, value: recorded.append((name, value))
    stubber.add_response(
        "invoke",
        _invoke_response(RESULT),
        {
            "FunctionName": NAME,
            "Qualifier": "live",
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(PAYLOAD, separators=(",", ":")).encode(),
        },
    )

    with stubber:
        result = backend.invoke(NAME, PAYLOAD)

    assert result == RESULT
    assert recorded == [("Invocations", 1)]
    stubber.assert_no_pending_responses()


def test_invoke_version_sends_qualifier() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    stubber.add_response(
        "invoke",
        _invoke_response(RESULT),
        {"FunctionName": NAME, "Qualifier": "2", "InvocationType": "RequestResponse", "Payload": ANY},
    )

    with stubber:
        result = backend.invoke(NAME, PAYLOAD, "2")

    assert result == RESULT
    stubber.assert_no_pending_responses()


def test_invoke_counts_pair_errors() -> None:
    recorded: list[tuple[str, int]] = []
    backend, stubber = stubbed_backend(FakeClock())
    backend._metrics = lambda name, value: recorded.append((name, value))
    error = {"type": "ZeroDivisionError", "message": "division by zero", "line": 3}
    body = {"results": [{"id": "1:10:11", "score": None, "per_label": None, "error": error}], "not_run": []}
    stubber.add_response("invoke", _invoke_response(body))

    with stubber:
        backend.invoke(NAME, PAYLOAD)

    assert ("PairErrors", 1) in recorded


@pytest.mark.parametrize(
    ("function_error", "error_type", "reason"),
    [
        ("Unhandled", "Sandbox.Timedout", "timeout"),
        ("Unhandled", "Runtime.OutOfMemory", "memory"),
        ("Unhandled", "Runtime.ExitError", "crash"),
        ("Handled", "KeyError", "function_error"),
    ],
)
def test_invoke_function_error_raises_batch_failure(function_error: str, error_type: str, reason: str) -> None:
    backend, stubber = stubbed_backend(FakeClock())
    body = {"errorType": error_type, "errorMessage": "Task failed"}
    stubber.add_response("invoke", _invoke_response(body, function_error))

    with stubber, pytest.raises(BatchFailedError) as raised:
        backend.invoke(NAME, PAYLOAD)

    assert raised.value.reason == reason
    assert raised.value.culprit_id is None
    assert NAME in raised.value.message


def test_invoke_response_without_results_raises_batch_failure() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    stubber.add_response("invoke", _invoke_response({"unexpected": True}))

    with stubber, pytest.raises(BatchFailedError) as raised:
        backend.invoke(NAME, PAYLOAD)

    assert raised.value.reason == "function_error"


def test_invoke_too_many_requests_raises_throttled() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    client_error(stubber, "invoke", "TooManyRequestsException", 429)

    with stubber, pytest.raises(ThrottledError):
        backend.invoke(NAME, PAYLOAD)


def test_invoke_pending_function_raises_throttled() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    client_error(stubber, "invoke", "ResourceConflictException", 409, "The function is currently in state Pending")

    with stubber, pytest.raises(ThrottledError) as raised:
        backend.invoke(NAME, PAYLOAD)

    assert NAME in str(raised.value)


def test_invoke_oversized_batch_fails_before_sending() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    big = dict(PAYLOAD, pairs=[{"id": "x", "annotation_1": {"text": "a" * (6 * 1024 * 1024)}, "annotation_2": {}}])

    with stubber, pytest.raises(BatchFailedError) as raised:
        backend.invoke(NAME, big)

    assert "over Lambda's limit" in raised.value.message


def test_orchestrator_retries_throttled_invoke_then_scores() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    retry_clock = FakeClock()
    client_error(stubber, "invoke", "TooManyRequestsException", 429)
    client_error(stubber, "invoke", "ServiceException", 500)
    stubber.add_response("invoke", _invoke_response(RESULT))
    policy = orchestrator.RetryPolicy(sleep=retry_clock.sleep, clock=retry_clock, uniform=lambda low, high: high)

    with stubber:
        results = orchestrator.score_pairs(
            backend, NAME, PAYLOAD["pairs"], per_label=False, request_id="req-1", project="sentiment", retry=policy
        )

    assert results["1:10:11"]["score"] == 1.0
    assert len(retry_clock.sleeps) == 2
    stubber.assert_no_pending_responses()


def _client_error(code: str, status: int) -> ClientError:
    body = {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(body, "Invoke")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ResourceNotFoundException", 404, FunctionNotFoundError),
        ("ResourceConflictException", 409, ConflictError),
        ("TooManyRequestsException", 429, ThrottledError),
        ("ServiceException", 500, ThrottledError),
        ("SomethingNew", 503, ThrottledError),
        ("InvalidParameterValueException", 400, LambdaParameterError),
        ("RequestTooLargeException", 413, PayloadTooLargeError),
        ("AccessDeniedException", 403, BackendError),
        ("CodeStorageExceededException", 400, BackendError),
    ],
)
def test_translate_client_error_maps_code(code: str, status: int, expected: type[Exception]) -> None:
    translated = translate_client_error(_client_error(code, status), NAME, "Invoke")

    assert isinstance(translated, expected)
    assert NAME in str(translated)


def test_translate_client_error_leaves_unknown_code() -> None:
    error = _client_error("KMSAccessDeniedException2", 400)

    assert translate_client_error(error, NAME, "Invoke") is error
