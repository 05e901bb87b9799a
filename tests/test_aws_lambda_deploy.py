"""Deploy, get, list and delete on the Lambda backend, against botocore's Stubber.

These cover the AWS behaviors moto does not model: Pending functions, Failed states with a reason,
IAM propagation delays, update conflicts and pagination. A Stubber fails on any call that was not
queued, so each test also proves that no other AWS call was made.
"""

from __future__ import annotations

import pytest
from aws_fakes import (
    LAYER_ARN,
    OTHER_SOURCE,
    ROLE_ARN,
    SOURCE,
    FakeClock,
    client_error,
    configuration,
    expect_get,
    get_function_response,
    spec,
    stubbed_backend,
    version_response,
)
from botocore.stub import ANY

from custom_metrics.backends.aws_lambda import RUNTIME_HANDLER
from custom_metrics.backends.aws_status import DEPLOY_MARKER_TAG
from custom_metrics.backends.base import DeployOutcome
from custom_metrics.errors import (
    BackendError,
    ConflictError,
    DeploymentFailedError,
    FunctionNotFoundError,
    InvalidInputError,
)
from custom_metrics.packaging import build_package

NAME = "custom-metric-qa-sentiment"


def _expect_create(stubber, request_spec, response_state: str = "Pending") -> None:
    expected = {
        "FunctionName": NAME,
        "Runtime": "python3.11",
        "Role": ROLE_ARN,
        "Handler": RUNTIME_HANDLER,
        "Code": {"ZipFile": request_spec.package},
        "Description": ANY,
        "Timeout": 30,
        "MemorySize": 1024,
        "Layers": [LAYER_ARN],
        "Architectures": ["x86_64"],
        "Tags": request_spec.tags,
        "Publish": True,
    }
    stubber.add_response("create_function", configuration(state=response_state), expected)


def test_deploy_create_waits_from_pending_to_active() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    request = spec()
    client_error(stubber, "get_function", "ResourceNotFoundException", 404)
    _expect_create(stubber, request)
    stubber.add_response("get_function", get_function_response(state="Pending"), {"FunctionName": NAME})
    stubber.add_response("get_function", get_function_response(state="Active"), {"FunctionName": NAME})
    stubber.add_response("get_function", get_function_response(state="Active"), {"FunctionName": NAME})

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.CREATED
    assert result.function.status == "Active"
    assert result.function.tags == request.tags
    stubber.assert_no_pending_responses()


def test_deploy_create_failed_state_raises_with_reason() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    request = spec()
    reason = "Lambda was unable to configure access to your layer"
    client_error(stubber, "get_function", "ResourceNotFoundException", 404)
    _expect_create(stubber, request)
    stubber.add_response("get_function", get_function_response(state="Failed", StateReason=reason))

    with stubber, pytest.raises(DeploymentFailedError) as raised:
        backend.deploy(request)

    assert reason in raised.value.message
    assert NAME in raised.value.message
    assert raised.value.details["status"] == "Failed"


def test_deploy_create_retries_until_role_is_assumable() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    request = spec()
    message = "The role defined for the function cannot be assumed by Lambda."
    client_error(stubber, "get_function", "ResourceNotFoundException", 404)
    client_error(stubber, "create_function", "InvalidParameterValueException", 400, message)
    client_error(stubber, "create_function", "InvalidParameterValueException", 400, message)
    _expect_create(stubber, request, response_state="Active")
    stubber.add_response("get_function", get_function_response())
    stubber.add_response("get_function", get_function_response())

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.CREATED
    assert clock.sleeps == [0.25, 0.5]
    stubber.assert_no_pending_responses()


def test_deploy_create_role_never_assumable_stops_at_deadline() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock, deploy_deadline_seconds=3.0)
    message = "The role defined for the function cannot be assumed by Lambda."
    client_error(stubber, "get_function", "ResourceNotFoundException", 404)
    for _ in range(10):
        client_error(stubber, "create_function", "InvalidParameterValueException", 400, message)

    with stubber, pytest.raises(BackendError) as raised:
        backend.deploy(spec())

    assert message in raised.value.message
    assert NAME in raised.value.message
    assert sum(clock.sleeps) <= 3.0


def _expect_publish(stubber, request_spec, version: str) -> None:
    """Queue PublishVersion of `request_spec`'s code and the wait until that version is Active."""
    stubber.add_response(
        "publish_version",
        configuration(sha=request_spec.code_sha256, Version=version),
        {"FunctionName": NAME, "CodeSha256": request_spec.code_sha256},
    )
    published = version_response(version, sha=request_spec.code_sha256)
    stubber.add_response("get_function", published, {"FunctionName": NAME, "Qualifier": version})
    stubber.add_response("get_function", published, {"FunctionName": NAME, "Qualifier": version})


def test_deploy_unchanged_code_makes_no_update_call() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    expect_get(stubber, get_function_response(), version_response("1"))

    with stubber:
        result = backend.deploy(spec())

    # The Stubber rejects any call not queued, so no UpdateFunctionCode or PublishVersion was made.
    assert result.outcome is DeployOutcome.UNCHANGED
    assert result.function.status == "Active"
    assert result.function.version == "1"
    assert result.candidate is None
    stubber.assert_no_pending_responses()


def test_deploy_without_live_publishes_version() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    request = spec()
    # The first version failed its trial, so `live` was never created and $LATEST already has the code.
    expect_get(stubber, get_function_response(), None)
    _expect_publish(stubber, request, "1")
    expect_get(stubber, get_function_response(), None)

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.UPDATED
    assert result.candidate == "1"
    assert result.function.version is None
    stubber.assert_no_pending_responses()


def test_deploy_changed_tags_only_tags_and_untags() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    arn = configuration()["FunctionArn"]
    current = {**spec().tags, "team": "old-team", "cost-center": "42"}
    expect_get(stubber, get_function_response(tags=current), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {"team": "annotation-quality"}})
    stubber.add_response("untag_resource", {}, {"Resource": arn, "TagKeys": ["cost-center"]})
    expect_get(stubber, get_function_response(), version_response("1"))

    with stubber:
        result = backend.deploy(spec())

    # Tags belong to the function, not to a version, so no version is published and `live` stays.
    assert result.outcome is DeployOutcome.UPDATED
    assert result.candidate is None
    assert result.function.tags == spec().tags
    stubber.assert_no_pending_responses()


def test_deploy_changed_memory_updates_only_memory() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    arn = configuration()["FunctionArn"]
    request = spec()
    expect_get(stubber, get_function_response(memory=512), version_response("1", memory=512))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    stubber.add_response(
        "update_function_configuration", configuration(update="InProgress"), {"FunctionName": NAME, "MemorySize": 1024}
    )
    stubber.add_response("get_function", get_function_response(update="Successful"), {"FunctionName": NAME})
    stubber.add_response("get_function", get_function_response(update="Successful"), {"FunctionName": NAME})
    stubber.add_response("untag_resource", {}, {"Resource": arn, "TagKeys": [DEPLOY_MARKER_TAG]})
    _expect_publish(stubber, request, "2")
    expect_get(stubber, get_function_response(), version_response("1", memory=512))

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.UPDATED
    assert result.candidate == "2"
    stubber.assert_no_pending_responses()


def test_deploy_update_retries_conflict_then_succeeds() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    request = spec(source=OTHER_SOURCE)
    arn = configuration()["FunctionArn"]
    expect_get(stubber, get_function_response(), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    client_error(stubber, "update_function_code", "ResourceConflictException", 409)
    client_error(stubber, "update_function_code", "ResourceConflictException", 409)
    stubber.add_response(
        "update_function_code", configuration(update="InProgress"), {"FunctionName": NAME, "ZipFile": request.package}
    )
    stubber.add_response("get_function", get_function_response(update="InProgress"))
    stubber.add_response("get_function", get_function_response(sha=request.code_sha256))
    stubber.add_response("get_function", get_function_response(sha=request.code_sha256))
    stubber.add_response("untag_resource", {}, {"Resource": arn, "TagKeys": [DEPLOY_MARKER_TAG]})
    # PublishVersion is queued with the new code's CodeSha256, so the new version has the new code.
    _expect_publish(stubber, request, "2")
    expect_get(stubber, get_function_response(sha=request.code_sha256), version_response("1"))

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.UPDATED
    assert result.candidate == "2"
    # `live` moves only after the service's trial, so the result still shows version 1's code.
    assert result.function.version == "1"
    assert result.function.code_sha256 == spec().code_sha256
    assert clock.sleeps == [0.25, 0.5]
    stubber.assert_no_pending_responses()


def test_deploy_update_conflict_until_deadline_raises_conflict() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock, deploy_deadline_seconds=5.0)
    arn = configuration()["FunctionArn"]
    expect_get(stubber, get_function_response(), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    for _ in range(20):
        client_error(stubber, "update_function_code", "ResourceConflictException", 409)

    with stubber, pytest.raises(ConflictError) as raised:
        backend.deploy(spec(source=OTHER_SOURCE))

    assert NAME in raised.value.message
    assert "still busy after 5 s" in raised.value.message
    assert sum(clock.sleeps) <= 5.0


def test_get_interrupted_first_deploy_is_pending_then_failed() -> None:
    clock = FakeClock(now=1_796_396_400.0)
    backend, stubber = stubbed_backend(clock, deploy_deadline_seconds=20.0)
    started = "2026-12-04T15:00:00+00:00"  # the FakeClock's start, in UTC
    tags = {**spec().tags, DEPLOY_MARKER_TAG: started}
    # No version is live, so the marker on $LATEST decides the status of the function itself.
    expect_get(stubber, get_function_response(tags=tags), None)
    expect_get(stubber, get_function_response(tags=tags), None)

    with stubber:
        during = backend.get(NAME)
        clock.sleep(600.0)
        after = backend.get(NAME)

    assert during.status == "Pending"
    assert after.status == "Failed"
    assert "deploy again" in (after.status_reason or "")
    assert DEPLOY_MARKER_TAG not in after.tags
    stubber.assert_no_pending_responses()


def test_get_interrupted_update_keeps_live_active() -> None:
    clock = FakeClock(now=1_796_396_400.0)
    backend, stubber = stubbed_backend(clock, deploy_deadline_seconds=20.0)
    started = "2026-12-04T15:00:00+00:00"
    tags = {**spec().tags, DEPLOY_MARKER_TAG: started}
    # The live version is immutable and Active; the half-finished update touched $LATEST only.
    expect_get(stubber, get_function_response(tags=tags), version_response("1"))
    expect_get(stubber, get_function_response(tags=tags), version_response("1"))

    with stubber:
        during = backend.get(NAME)
        clock.sleep(600.0)
        after = backend.get(NAME)

    assert during.status == "Active"
    assert during.deploy_status == "Pending"
    assert after.status == "Active"
    assert after.deploy_status == "Failed"
    assert "deploy again" in (after.deploy_status_reason or "")
    assert after.version == "1"
    stubber.assert_no_pending_responses()


def test_deploy_update_failed_status_raises_with_reason() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    arn = configuration()["FunctionArn"]
    reason = "Uploaded file must be a non-empty zip"
    expect_get(stubber, get_function_response(), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    stubber.add_response("update_function_code", configuration(update="InProgress"))
    stubber.add_response("get_function", get_function_response(update="Failed", LastUpdateStatusReason=reason))

    with stubber, pytest.raises(DeploymentFailedError) as raised:
        backend.deploy(spec(source=OTHER_SOURCE))

    assert reason in raised.value.message


def test_deploy_failed_latest_uploads_code_again() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    arn = configuration()["FunctionArn"]
    request = spec()
    reason = "Lambda was unable to configure access to your layer"
    # An earlier update failed on $LATEST while `live` kept serving version 1, which has the requested code.
    expect_get(stubber, get_function_response(update="Failed", LastUpdateStatusReason=reason), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    stubber.add_response(
        "update_function_code", configuration(update="InProgress"), {"FunctionName": NAME, "ZipFile": request.package}
    )
    stubber.add_response("get_function", get_function_response(), {"FunctionName": NAME})
    stubber.add_response("get_function", get_function_response(), {"FunctionName": NAME})
    stubber.add_response("untag_resource", {}, {"Resource": arn, "TagKeys": [DEPLOY_MARKER_TAG]})
    # Lambda returns the newest version instead of publishing when $LATEST matches it.
    _expect_publish(stubber, request, "1")
    expect_get(stubber, get_function_response(), version_response("1"))

    with stubber:
        result = backend.deploy(request)

    assert result.outcome is DeployOutcome.UPDATED
    assert result.function.status == "Active"
    assert result.candidate == "1"
    stubber.assert_no_pending_responses()


def test_deploy_still_updating_at_deadline_raises_conflict() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock, deploy_deadline_seconds=2.0)
    arn = configuration()["FunctionArn"]
    expect_get(stubber, get_function_response(), version_response("1"))
    stubber.add_response("tag_resource", {}, {"Resource": arn, "Tags": {DEPLOY_MARKER_TAG: ANY}})
    stubber.add_response("update_function_code", configuration(update="InProgress"))
    stubber.add_response("get_function", get_function_response(update="InProgress"))
    stubber.add_response("get_function", get_function_response(update="InProgress"))
    stubber.add_response("get_function", get_function_response(update="InProgress"))

    with stubber, pytest.raises(ConflictError) as raised:
        backend.deploy(spec(source=OTHER_SOURCE))

    assert "still updating" in raised.value.message


def test_deploy_out_of_range_memory_rejected_before_aws() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)

    with stubber, pytest.raises(InvalidInputError) as raised:
        backend.deploy(spec(memory_size=64))

    assert "64" in raised.value.message


def test_get_missing_function_raises_not_found() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    client_error(stubber, "get_function", "ResourceNotFoundException", 404)

    with stubber, pytest.raises(FunctionNotFoundError) as raised:
        backend.get(NAME)

    assert NAME in raised.value.message


def test_get_returns_source_from_package() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return build_package(SOURCE)

    backend._fetch_package = fetch
    live = version_response("3")
    expect_get(stubber, get_function_response(), live)

    with stubber:
        info = backend.get(NAME)

    assert info.source is not None
    assert "def agreement" in info.source
    assert fetched == [live["Code"]["Location"]]
    assert info.version == "3"
    assert info.project == "sentiment"
    assert info.last_modified == "2026-12-04T15:00:00+00:00"


def test_list_pages_with_marker_and_keeps_metric_functions() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    first = "custom-metric-a"
    second = "custom-metric-b"
    stubber.add_response(
        "list_functions",
        {"Functions": [configuration(first), configuration("billing-job")], "NextMarker": "page-2"},
        {},
    )
    stubber.add_response("list_functions", {"Functions": [configuration(second)]}, {"Marker": "page-2"})
    expect_get(stubber, get_function_response(name=first), version_response("1", name=first), name=first)
    expect_get(stubber, get_function_response(name=second), None, name=second)

    with stubber:
        infos = backend.list()

    assert [info.name for info in infos] == [first, second]
    assert [info.version for info in infos] == ["1", None]
    stubber.assert_no_pending_responses()


def test_delete_retries_conflict_then_deletes() -> None:
    clock = FakeClock()
    backend, stubber = stubbed_backend(clock)
    client_error(stubber, "delete_function", "ResourceConflictException", 409)
    stubber.add_response("delete_function", {}, {"FunctionName": NAME})

    with stubber:
        backend.delete(NAME)

    assert clock.sleeps == [0.25]
    stubber.assert_no_pending_responses()


def test_delete_missing_function_raises_not_found() -> None:
    backend, stubber = stubbed_backend(FakeClock())
    client_error(stubber, "delete_function", "ResourceNotFoundException", 404)

    with stubber, pytest.raises(FunctionNotFoundError):
        backend.delete(NAME)
