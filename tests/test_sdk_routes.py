"""The Label Studio SDK routes, driven by label-studio-sdk itself against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from custom_metrics.api.app import build_resolver
from custom_metrics.api.sdk_routes import LocalMetricParamStore, log_window
from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import BackendError
from custom_metrics.server import ControlPlaneServer, LambdaContext, proxy_event
from custom_metrics.service import MetricService

TOKEN = "sdk-test-token-3f9c2a"
PROJECT_ID = 12
FUNCTION = "custom-metric-12"
CONSTANT = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"
HALF = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 0.5\n"
BROKEN = "def agreement(annotation_1, annotation_2, per_label=False):\n    return (\n"


@pytest.fixture
def server(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlaneServer]:
    monkeypatch.setenv("CUSTOM_METRICS_API_TOKEN", TOKEN)
    service = MetricService(LocalBackend(state_dir, workers=1))
    server = ControlPlaneServer(("127.0.0.1", 0), service)
    # A short poll interval makes shutdown quick, since every test starts its own server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    service.close()


@pytest.fixture
def base_url(server: ControlPlaneServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def sdk(base_url: str, api_key: str = TOKEN, headers: dict[str, str] | None = None) -> LabelStudio:
    # trust_env=False keeps proxy variables from routing 127.0.0.1 elsewhere, and max_retries=0 surfaces errors at once.
    return LabelStudio(
        base_url=base_url,
        api_key=api_key,
        headers=headers,
        max_retries=0,
        httpx_client=httpx.Client(trust_env=False, timeout=30),
    )


@pytest.fixture
def ls(base_url: str) -> LabelStudio:
    return sdk(base_url)


def raw(
    base_url: str, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=30) as client:
        return client.request(method, base_url + path, headers=headers, json=body)


def deployed(server: ControlPlaneServer, project: str = str(PROJECT_ID)) -> dict[str, Any]:
    function: dict[str, Any] = server.service.get_metric(project)["function"]
    return function


# Deploy and describe ---------------------------------------------------------------------------


def test_deploy_function_creates_metric(ls: LabelStudio, server: ControlPlaneServer) -> None:
    assert ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT) is None
    function = deployed(server)
    assert function["name"] == FUNCTION
    assert function["source"] == CONSTANT
    assert function["status"] == "Active"


def test_get_function_returns_code_and_status(ls: LabelStudio) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    response = ls.projects.metrics.custom.get_function(PROJECT_ID)
    assert response.code == CONSTANT
    assert response.status == "Active"


def test_get_function_not_deployed_status(ls: LabelStudio) -> None:
    response = ls.projects.metrics.custom.get_function(PROJECT_ID)
    assert response.status == "NotDeployed"
    assert response.code == ""


def test_update_lambda_deploys_and_get_lambda_reads(ls: LabelStudio, server: ControlPlaneServer) -> None:
    ls.projects.metrics.custom.update_lambda(
        PROJECT_ID, code=CONSTANT, region="eu-west-1", role="arn:aws:iam::1:role/x"
    )
    response = ls.projects.metrics.custom.get_lambda(PROJECT_ID)
    assert response.code == CONSTANT
    assert response.status == "Active"
    assert deployed(server)["name"] == FUNCTION


def test_update_lambda_region_role_reported_ignored(base_url: str) -> None:
    body = {"code": CONSTANT, "region": "eu-west-1", "role": "arn:aws:iam::1:role/x"}
    response = raw(base_url, "POST", "/api/projects/12/aws-custom-function", {"Authorization": f"Token {TOKEN}"}, body)
    assert response.status_code == 201
    assert "region and role ignored" in response.json()["warnings"][0]


def test_deploy_function_replaces_code(ls: LabelStudio, server: ControlPlaneServer) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    first = deployed(server)["code_sha256"]
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=HALF)
    assert deployed(server)["source"] == HALF
    assert deployed(server)["code_sha256"] != first


def test_deploy_function_status_codes(base_url: str) -> None:
    headers = {"Authorization": f"Token {TOKEN}"}
    created = raw(base_url, "POST", "/api/projects/12/custom-function", headers, {"code": CONSTANT})
    unchanged = raw(base_url, "POST", "/api/projects/12/custom-function", headers, {"code": CONSTANT})
    assert created.status_code == 201
    assert unchanged.status_code == 200
    assert unchanged.json()["result"] == "unchanged"


def test_deploy_function_keeps_tags_timeout_memory(ls: LabelStudio, server: ControlPlaneServer) -> None:
    server.service.put_metric("12", code=CONSTANT, tags={"team": "qa"}, timeout=120, memory_size=512)
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=HALF)
    function = deployed(server)
    assert function["source"] == HALF
    assert function["tags"]["team"] == "qa"
    assert function["timeout"] == 120
    assert function["memory_size"] == 512


def test_deploy_function_broken_code_rejected(ls: LabelStudio, server: ControlPlaneServer) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=BROKEN)
    assert caught.value.status_code == 422
    assert isinstance(caught.value.body, dict)
    assert "line 2" in caught.value.body["detail"]
    assert caught.value.body["message"] == caught.value.body["detail"]
    assert ls.projects.metrics.custom.get_function(PROJECT_ID).status == "NotDeployed"


def test_deploy_function_broken_code_keeps_previous(ls: LabelStudio) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    with pytest.raises(ApiError):
        ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=BROKEN)
    assert ls.projects.metrics.custom.get_function(PROJECT_ID).code == CONSTANT


def test_deploy_function_missing_code_is_400(base_url: str) -> None:
    headers = {"Authorization": f"Token {TOKEN}"}
    response = raw(base_url, "POST", "/api/projects/12/custom-function", headers, {"region": "x"})
    assert response.status_code == 400
    assert "code" in response.json()["detail"]


# Check -----------------------------------------------------------------------------------------


def test_check_function_valid_code_passes(ls: LabelStudio) -> None:
    assert ls.projects.metrics.custom.check_function(PROJECT_ID, code=CONSTANT) is None


def test_check_function_broken_code_raises(ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.custom.check_function(PROJECT_ID, code=BROKEN)
    assert caught.value.status_code == 422
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["detail"].startswith("metric check failed")
    assert caught.value.body["check"]["valid"] is False


def test_check_function_missing_entry_point_raises(ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.custom.check_function(PROJECT_ID, code="def score(a, b):\n    return 1.0\n")
    assert caught.value.status_code == 422
    assert isinstance(caught.value.body, dict)
    assert "agreement" in caught.value.body["detail"]


def test_check_function_deploys_nothing(ls: LabelStudio) -> None:
    ls.projects.metrics.custom.check_function(PROJECT_ID, code=CONSTANT)
    assert ls.projects.metrics.custom.get_function(PROJECT_ID).status == "NotDeployed"


# Logs ------------------------------------------------------------------------------------------


def test_get_function_logs_returns_log_list(ls: LabelStudio) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    body = ls.projects.metrics.custom.get_function_logs(PROJECT_ID, start_date="2024-05-01", end_date="2024-05-02")
    assert body["function"] == FUNCTION
    assert body["logs"] == []
    assert body["start"] == "2024-05-01T00:00:00+00:00"
    assert body["end"] == "2024-05-03T00:00:00+00:00"
    assert body["limit"] == 100


def test_aws_logs_passes_limit(ls: LabelStudio) -> None:
    ls.projects.metrics.custom.update_lambda(PROJECT_ID, code=CONSTANT)
    body = ls.projects.metrics.custom.logs(PROJECT_ID, limit=5)
    assert body["function"] == FUNCTION
    assert body["limit"] == 5


def test_logs_not_deployed_is_404(ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.custom.get_function_logs(PROJECT_ID)
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert FUNCTION in caught.value.body["detail"]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"start_date": "05/01/2024"}, "start_date='05/01/2024' is not a date"),
        ({"end_date": "2024-13-01"}, "end_date='2024-13-01' is not a date"),
        ({"start_date": "2024-05-03", "end_date": "2024-05-01"}, "is after the end of the range"),
        ({"limit": 0}, "limit=0 is out of range"),
    ],
)
def test_logs_invalid_query_is_400(ls: LabelStudio, query: dict[str, Any], fragment: str) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.custom.get_function_logs(PROJECT_ID, **query)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert fragment in caught.value.body["detail"]


# Metric parameters -----------------------------------------------------------------------------


def test_metrics_get_without_params_is_empty(ls: LabelStudio) -> None:
    params = ls.projects.metrics.get(PROJECT_ID)
    assert params.metric_name is None
    assert params.metric_params is None
    assert params.agreement_threshold is None


def test_metrics_update_then_get_round_trip(ls: LabelStudio) -> None:
    updated = ls.projects.metrics.update(
        PROJECT_ID, metric_name="span_overlap", additional_params={"iou": 0.5}, agreement_threshold=80
    )
    assert updated is not None
    assert updated.metric_name == "span_overlap"
    params = ls.projects.metrics.get(PROJECT_ID)
    assert params.metric_name == "span_overlap"
    assert params.metric_params == {"iou": 0.5}
    assert params.agreement_threshold == 80
    assert params.max_additional_annotators_assignable is None


def test_metrics_update_merges_fields(ls: LabelStudio) -> None:
    ls.projects.metrics.update(PROJECT_ID, metric_name="span_overlap", agreement_threshold=80)
    ls.projects.metrics.update(PROJECT_ID, max_additional_annotators_assignable=2)
    params = ls.projects.metrics.get(PROJECT_ID)
    assert params.metric_name == "span_overlap"
    assert params.agreement_threshold == 80
    assert params.max_additional_annotators_assignable == 2


def test_metrics_update_stores_file_per_project(ls: LabelStudio, state_dir: Path) -> None:
    ls.projects.metrics.update(PROJECT_ID, metric_name="span_overlap")
    stored = json.loads((state_dir / "metric_params" / "12.json").read_text())
    assert stored == {"metric_name": "span_overlap"}


def test_metrics_projects_kept_apart(ls: LabelStudio) -> None:
    ls.projects.metrics.update(PROJECT_ID, metric_name="span_overlap")
    assert ls.projects.metrics.get(13).metric_name is None


def test_metrics_update_invalid_threshold_is_400(ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.update(PROJECT_ID, agreement_threshold=150)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert "agreement_threshold" in caught.value.body["detail"]


def test_metrics_update_oversized_params_is_413(ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        ls.projects.metrics.update(PROJECT_ID, additional_params={"blob": "x" * 70_000})
    assert caught.value.status_code == 413
    assert ls.projects.metrics.get(PROJECT_ID).metric_params is None


# Authentication --------------------------------------------------------------------------------


def test_wrong_token_is_401_and_deploys_nothing(base_url: str, server: ControlPlaneServer) -> None:
    with pytest.raises(ApiError) as caught:
        sdk(base_url, api_key="wrong-token").projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    assert caught.value.status_code == 401
    assert server.service.list_metrics()["functions"] == []


def test_wrong_token_metric_params_unchanged(base_url: str, ls: LabelStudio) -> None:
    with pytest.raises(ApiError) as caught:
        sdk(base_url, api_key="wrong-token").projects.metrics.update(PROJECT_ID, metric_name="other")
    assert caught.value.status_code == 401
    assert ls.projects.metrics.get(PROJECT_ID).metric_name is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/projects/12/custom-function"),
        ("POST", "/api/projects/12/custom-function"),
        ("GET", "/api/projects/12/aws-custom-function"),
        ("POST", "/api/projects/12/aws-custom-function"),
        ("POST", "/api/projects/12/check-function"),
        ("GET", "/api/projects/12/custom-function-logs"),
        ("GET", "/api/projects/12/aws-custom-function-logs"),
        ("GET", "/api/projects/12/metricparam/"),
        ("POST", "/api/projects/12/metricparam/"),
    ],
)
def test_every_route_missing_token_is_401(base_url: str, method: str, path: str) -> None:
    body = {"code": CONSTANT} if method == "POST" and "metricparam" not in path else None
    response = raw(base_url, method, path, body=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Token")
    assert "missing API token" in response.json()["detail"]


def test_unset_token_variable_is_401_with_fix(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOM_METRICS_API_TOKEN")
    response = raw(base_url, "GET", "/api/projects/12/custom-function", {"Authorization": f"Token {TOKEN}"})
    assert response.status_code == 401
    assert "CUSTOM_METRICS_API_TOKEN is not set" in response.json()["detail"]


def test_blank_token_variable_is_401(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_METRICS_API_TOKEN", "  ")
    response = raw(base_url, "GET", "/api/projects/12/custom-function", {"Authorization": "Token x"})
    assert response.status_code == 401
    assert "is not set" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"authorization": f"token {TOKEN}"},
        {"X-API-Key": TOKEN},
    ],
)
def test_accepted_header_forms(base_url: str, headers: dict[str, str]) -> None:
    response = raw(base_url, "GET", "/api/projects/12/custom-function", headers)
    assert response.status_code == 200
    assert response.json()["status"] == "NotDeployed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Token {TOKEN}x"},
        {"Authorization": f"Token {TOKEN[:-1]}"},
        {"Authorization": "Token wrong", "X-API-Key": TOKEN},
    ],
)
def test_rejected_header_forms(base_url: str, headers: dict[str, str]) -> None:
    response = raw(base_url, "GET", "/api/projects/12/custom-function", headers)
    assert response.status_code == 401


def test_sdk_x_api_key_header_accepted(base_url: str) -> None:
    client = sdk(base_url, api_key="unused", headers={"X-API-Key": TOKEN})
    assert client.projects.metrics.custom.get_function(PROJECT_ID).status == "NotDeployed"


def test_token_never_logged(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sdk(base_url).projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    with pytest.raises(ApiError):
        sdk(base_url, api_key="wrong-secret-77").projects.metrics.custom.get_function(PROJECT_ID)
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "API token rejected" in text
    assert TOKEN not in text
    assert "wrong-secret-77" not in text


def test_other_routes_need_no_token(base_url: str) -> None:
    response = raw(base_url, "GET", "/metrics")
    assert response.status_code == 200


# Project ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("project", ["abc", "12a", "-1", "1" * 19])
def test_non_integer_project_id_is_400(base_url: str, project: str) -> None:
    response = raw(base_url, "GET", f"/api/projects/{project}/custom-function", {"Authorization": f"Token {TOKEN}"})
    assert response.status_code == 400
    assert "integer id" in response.json()["detail"]


def test_project_id_leading_zeros_normalized(base_url: str, ls: LabelStudio) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=CONSTANT)
    response = raw(base_url, "GET", "/api/projects/012/custom-function", {"Authorization": f"Token {TOKEN}"})
    assert response.json()["function"] == FUNCTION


# Backends without a metric parameter store -----------------------------------------------------


class _NoStoreBackend:
    """A backend that is not the local one, standing in for the Lambda backend."""

    kind = "fake"


class _FailingBackend(_NoStoreBackend):
    """A backend whose reads fail the way the Lambda backend reports an AWS failure."""

    def get(self, name: str) -> None:
        raise BackendError(f"reading {name} failed: AccessDeniedException; grant lambda:GetFunction")


def resolve_get(backend: object, path: str) -> dict[str, Any]:
    service = MetricService(backend)  # type: ignore[arg-type]
    resolver = build_resolver(lambda: service)
    event = proxy_event("GET", path, {"Authorization": f"Token {TOKEN}"}, b"", "r1", "::1")
    response: dict[str, Any] = resolver.resolve(event, LambdaContext(aws_request_id="r1"))
    return response


def test_metricparam_without_store_is_501(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_METRICS_API_TOKEN", TOKEN)
    response = resolve_get(_NoStoreBackend(), "/api/projects/12/metricparam/")
    assert response["statusCode"] == 501
    assert "not implemented" in json.loads(response["body"])["detail"]


def test_get_function_backend_failure_status_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_METRICS_API_TOKEN", TOKEN)
    response = resolve_get(_FailingBackend(), "/api/projects/12/custom-function")
    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["status"] == "Error"
    assert "AccessDeniedException" in body["status_reason"]


# Pure helpers ----------------------------------------------------------------------------------


def test_param_store_concurrent_updates_kept(state_dir: Path) -> None:
    store = LocalMetricParamStore(state_dir)
    threads = [threading.Thread(target=store.update, args=("12", {f"field_{index}": index})) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("12") == {f"field_{index}": index for index in range(8)}


def test_param_store_leaves_no_temporaries(state_dir: Path) -> None:
    store = LocalMetricParamStore(state_dir)
    store.update("12", {"metric_name": "a"})
    store.update("12", {"metric_name": "b"})
    assert sorted(path.name for path in (state_dir / "metric_params").iterdir()) == [".lock", "12.json"]


def test_log_window_defaults_to_day_before_now() -> None:
    now = datetime(2024, 5, 2, 15, 30, tzinfo=UTC)
    start, end = log_window(lambda name: None, now)
    assert end == now
    assert start == datetime(2024, 5, 1, 15, 30, tzinfo=UTC)


def test_log_window_end_date_only_covers_that_day() -> None:
    start, end = log_window({"end_date": "2024-05-02"}.get)
    assert start == datetime(2024, 5, 2, tzinfo=UTC)
    assert end == datetime(2024, 5, 3, tzinfo=UTC)


def test_sdk_deployed_metric_scores_export(ls: LabelStudio, base_url: str) -> None:
    ls.projects.metrics.custom.deploy_function(PROJECT_ID, code=HALF)
    choice = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["A"]}}
    task = {
        "id": 1,
        "data": {"text": "t"},
        "annotations": [{"id": 10, "completed_by": 1, "result": [choice]}, {"id": 11, "completed_by": 2, "result": []}],
    }
    response = raw(base_url, "POST", "/projects/12/agreement", body={"tasks": [task]})
    assert response.status_code == 200
    assert response.json()["agreement"] == 0.5
    assert response.json()["function"]["name"] == FUNCTION
