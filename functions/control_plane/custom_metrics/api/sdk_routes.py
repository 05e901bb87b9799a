"""Routes that label-studio-sdk 2.x calls for a project's custom agreement metric.

Label Studio Enterprise serves these paths and Community returns 404 for all of them. With the SDK's
`base_url` pointed at this service, `projects.metrics.custom` and `projects.metrics` work unchanged:

    GET, POST /api/projects/{id}/custom-function          get_function, deploy_function
    GET, POST /api/projects/{id}/aws-custom-function      get_lambda, update_lambda
    POST      /api/projects/{id}/check-function           check_function
    GET       /api/projects/{id}/custom-function-logs     get_function_logs
    GET       /api/projects/{id}/aws-custom-function-logs logs
    GET, POST /api/projects/{id}/metricparam/             projects.metrics.get, projects.metrics.update

The Label Studio project id (an integer) is the project name here, so project 12's metric is the
function `custom-metric-12`, or `custom-metric-<prefix>-12` when the service has a default prefix.

Every route requires the token in $CUSTOM_METRICS_API_TOKEN. label-studio-sdk 2.1.2 sends
`Authorization: Token <key>` for a key that is not a JWT, and `X-API-Key: <key>` when the caller sets
that header; both are accepted, and so is `Authorization: Bearer <key>`. A JWT key does not work:
the SDK first exchanges it at /api/token/refresh/, which this service does not serve.
Error bodies carry Label Studio's `detail` field next to this service's `message`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from custom_metrics.api.routing import new_router
from custom_metrics.api.validation import json_body, query_int
from custom_metrics.atomic_files import write_atomically
from custom_metrics.backends.base import STATUS_NOT_DEPLOYED
from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import (
    BackendError,
    FunctionNotFoundError,
    InvalidInputError,
    MetricSourceError,
    PayloadTooLargeError,
    ServiceError,
)
from custom_metrics.labelstudio.stores import open_metric_param_store
from custom_metrics.service import MetricService

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "CUSTOM_METRICS_API_TOKEN"  # noqa: S105  # the variable's name, not a token
AUTHORIZATION_SCHEMES = ("token", "bearer")
# The status label-studio-sdk defines for a function whose state could not be read.
STATUS_ERROR = "Error"
DEFAULT_LOG_LIMIT = 100
MAX_LOG_ROWS = 10000
LOG_WINDOW = timedelta(days=1)
MAX_PROJECT_ID_DIGITS = 18
MAX_METRIC_PARAMS_BYTES = 64 * 1024
# custom-metrics keeps its own tags (project, manager, deploy marker) under `custom-metrics:`, and AWS reserves `aws:`.
RESERVED_TAG_PREFIXES = ("custom-metrics:", "aws:")
METRIC_PARAM_FIELDS = ("metric_name", "metric_params", "agreement_threshold", "max_additional_annotators_assignable")


class NotImplementedOnBackendError(ServiceError):
    """The route exists, but the backend the service runs on does not support it yet."""

    status_code = 501


# Metric parameters -----------------------------------------------------------------------------


class MetricParamStore(Protocol):
    """Per-project metric parameters, as `projects.metrics.update` sends them."""

    def get(self, project: str) -> dict[str, Any]:
        """Return the stored parameters, or an empty dict when none are stored."""
        ...

    def update(self, project: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the stored parameters atomically and return the result."""
        ...


class LocalMetricParamStore:
    """One JSON file per project under `<state_dir>/metric_params/`, replaced atomically on each update."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / "metric_params"

    def get(self, project: str) -> dict[str, Any]:
        try:
            stored: dict[str, Any] = json.loads((self.folder / f"{project}.json").read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return stored

    def update(self, project: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._locked():
            merged = {**self.get(project), **changes}
            self._write(project, merged)
        logger.info("metric parameters updated", extra={"project": project, "fields": sorted(changes)})
        return merged

    def _write(self, project: str, params: dict[str, Any]) -> None:
        write_atomically(self.folder / f"{project}.json", json.dumps(params, indent=2, sort_keys=True).encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock on a fresh file description also excludes other threads of this process.
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def default_metric_param_store(service: MetricService) -> MetricParamStore | None:
    """Return the store that fits the service's backend, else the stack's S3 store, else None."""
    if isinstance(service.backend, LocalBackend):
        return LocalMetricParamStore(service.backend.state_dir)
    return open_metric_param_store()


# Middlewares -----------------------------------------------------------------------------------


def require_api_token(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Return 401 unless the request carries the token in $CUSTOM_METRICS_API_TOKEN, else run the route."""
    expected = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not expected:
        return _unauthorized(
            app,
            "unset",
            f"the Label Studio SDK routes are disabled because {TOKEN_VARIABLE} is not set; set it in the "
            "service's environment to a secret token and pass the same token to LabelStudio(api_key=...)",
        )
    presented = presented_token(app.current_event.headers)
    if presented is None:
        return _unauthorized(
            app, "missing", f"missing API token; send the header `Authorization: Token <value of {TOKEN_VARIABLE}>`"
        )
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        return _unauthorized(
            app, "invalid", f"invalid API token; send the value of {TOKEN_VARIABLE} set on the service"
        )
    return next_middleware(app)


def presented_token(headers: Mapping[str, str]) -> str | None:
    """Return the token from `Authorization: Token|Bearer <t>` or else `X-API-Key: <t>`, or None."""
    authorization = (headers.get("Authorization") or "").strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() in AUTHORIZATION_SCHEMES and credentials:
            return credentials
        return None
    api_key = (headers.get("X-API-Key") or "").strip()
    return api_key or None


def label_studio_errors(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Turn a ServiceError into its status with both `detail` (Label Studio's field) and `message`."""
    try:
        return next_middleware(app)
    except ServiceError as error:
        logger.info(
            "request rejected",
            extra={"status": error.status_code, "error": type(error).__name__, "request_id": _request_id(app)},
        )
        body = {"detail": error.message, **error.to_body()}
        return Response(status_code=error.status_code, content_type=content_types.APPLICATION_JSON, body=body)


def _unauthorized(app: APIGatewayRestResolver, reason: str, message: str) -> Response[Any]:
    # The log line names the reason only: the presented and expected tokens stay out of it.
    logger.warning(
        "API token rejected",
        extra={"reason": reason, "path": app.current_event.path, "request_id": _request_id(app)},
    )
    return Response(
        status_code=401,
        content_type=content_types.APPLICATION_JSON,
        body={"detail": message, "message": message},
        headers={"WWW-Authenticate": 'Token realm="custom-metrics"'},
    )


def _request_id(app: APIGatewayRestResolver) -> str:
    return app.current_event.request_context.request_id


# Routes ----------------------------------------------------------------------------------------


def build_router(
    service: Callable[[], MetricService],
    metric_param_store: Callable[[], MetricParamStore | None] | None = None,
) -> Router:
    router = new_router()
    store_factory = metric_param_store or (lambda: default_metric_param_store(service()))
    guarded: list[Callable[..., Any]] = [require_api_token, label_studio_errors]

    @router.get("/api/projects/<project>/custom-function", middlewares=guarded)
    @router.get("/api/projects/<project>/aws-custom-function", middlewares=guarded)
    def get_function(project: str) -> dict[str, Any]:
        return describe_function(service(), project_name(project))

    @router.post("/api/projects/<project>/custom-function", middlewares=guarded)
    @router.post("/api/projects/<project>/aws-custom-function", middlewares=guarded)
    def deploy_function(project: str) -> Response[Any]:
        project = project_name(project)
        body = json_body(router, "sdk_function")
        result = deploy(service(), project, body)
        status = 201 if result["result"] == "created" else 200
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=result)

    @router.post("/api/projects/<project>/check-function", middlewares=guarded)
    def check_function(project: str) -> dict[str, Any]:
        project = project_name(project)
        body = json_body(router, "sdk_check_function")
        return check(service(), project, body["code"])

    @router.get("/api/projects/<project>/custom-function-logs", middlewares=guarded)
    @router.get("/api/projects/<project>/aws-custom-function-logs", middlewares=guarded)
    def function_logs(project: str) -> dict[str, Any]:
        project = project_name(project)
        start, end = log_window(router.current_event.get_query_string_value)
        limit = query_int(router, "limit", DEFAULT_LOG_LIMIT, low=1, high=MAX_LOG_ROWS)
        result = service().logs(project, None, start.timestamp(), end.timestamp(), limit)
        return {
            "function": result["function"],
            "start": start.isoformat(timespec="seconds"),
            "end": end.isoformat(timespec="seconds"),
            "limit": limit,
            "logs": result["rows"],
        }

    @router.get("/api/projects/<project>/metricparam/", middlewares=guarded)
    def get_metric_params(project: str) -> dict[str, Any]:
        project = project_name(project)
        return metric_param_body(_require_store(store_factory()).get(project))

    @router.post("/api/projects/<project>/metricparam/", middlewares=guarded)
    def update_metric_params(project: str) -> dict[str, Any]:
        project = project_name(project)
        store = _require_store(store_factory())
        changes = metric_param_changes(json_body(router, "sdk_metric_params"))
        return metric_param_body(store.update(project, changes))

    return router


# Route logic -----------------------------------------------------------------------------------


def project_name(project_id: str) -> str:
    """Map a Label Studio project id to this service's project name: the integer as a string."""
    if not project_id.isascii() or not project_id.isdigit() or len(project_id) > MAX_PROJECT_ID_DIGITS:
        raise InvalidInputError(
            f"project id {project_id[:40]!r} is not a Label Studio project id; use the project's integer id"
        )
    return str(int(project_id))


def describe_function(service: MetricService, project: str) -> dict[str, Any]:
    """Return the function's code and status in the shape of the SDK's GetFunctionCustomResponse."""
    try:
        function = service.get_metric(project)["function"]
    except FunctionNotFoundError:
        return {"code": "", "status": STATUS_NOT_DEPLOYED, "function": service.function_name(project)}
    except BackendError as error:
        name = service.function_name(project)
        logger.warning("function status unavailable", extra={"function": name, "error": error.message})
        return {"code": "", "status": STATUS_ERROR, "function": name, "status_reason": error.message}
    return {
        "code": function["source"] or "",
        "status": function["status"],
        "status_reason": function["status_reason"],
        "function": function["name"],
        "code_sha256": function["code_sha256"],
        "last_modified": function["last_modified"],
    }


def deploy(service: MetricService, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Deploy the code, keeping the deployed function's tags, timeout and memory size."""
    result = service.put_metric(project, code=body["code"], **_current_settings(service, project))
    warnings = []
    ignored = [field for field in ("region", "role") if body.get(field) is not None]
    if ignored:
        warnings.append(
            f"{' and '.join(ignored)} ignored: this service deploys with the region and role of its own configuration"
        )
    logger.info("deployed through the SDK routes", extra={"project": project, "result": result["result"]})
    return {**result, "status": result["function"]["status"], "warnings": warnings}


def _current_settings(service: MetricService, project: str) -> dict[str, Any]:
    # The SDK sends only the code, so a redeploy keeps what the CLI or HTTP API configured.
    try:
        function = service.get_metric(project)["function"]
    except FunctionNotFoundError:
        return {}
    user_tags = {
        key: value for key, value in function["tags"].items() if not key.lower().startswith(RESERVED_TAG_PREFIXES)
    }
    return {"tags": user_tags, "timeout": function["timeout"], "memory_size": function["memory_size"]}


def check(service: MetricService, project: str, code: str) -> dict[str, Any]:
    """Check the code statically; a failing check raises MetricSourceError (422) listing every error."""
    result = service.check_metric(project, code)
    if not result["valid"]:
        errors = result["check"]["errors"]
        raise MetricSourceError(f"metric check failed: {'; '.join(errors)}", details={"check": result["check"]})
    return result


def log_window(query: Callable[[str], str | None], now: datetime | None = None) -> tuple[datetime, datetime]:
    """Turn the SDK's `start_date` and `end_date` (YYYY-MM-DD, UTC, both days included) into a time range.

    Without `end_date` the range ends now. Without `start_date` it starts one day before its end.
    """
    end_day = _query_date(query, "end_date")
    end = end_day + timedelta(days=1) if end_day is not None else (now or datetime.now(UTC))
    start_day = _query_date(query, "start_date")
    start = start_day if start_day is not None else end - LOG_WINDOW
    if end < start:
        raise InvalidInputError(
            f"start_date {start.date().isoformat()} is after the end of the range "
            f"({end.isoformat(timespec='seconds')}); give a start_date on or before end_date"
        )
    return start, end


def _query_date(query: Callable[[str], str | None], name: str) -> datetime | None:
    raw = query(name)
    if raw is None or raw == "":
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidInputError(f"query parameter {name}={raw[:40]!r} is not a date; give YYYY-MM-DD (UTC)") from exc


def metric_param_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """Map the SDK's update body onto stored fields: `additional_params` is stored as `metric_params`."""
    changes = {("metric_params" if key == "additional_params" else key): value for key, value in body.items()}
    size = len(json.dumps(changes).encode("utf-8"))
    if size > MAX_METRIC_PARAMS_BYTES:
        raise PayloadTooLargeError(
            f"metric parameters are {size} bytes of JSON, over the limit of {MAX_METRIC_PARAMS_BYTES}; "
            "keep large data out of additional_params"
        )
    return changes


def metric_param_body(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Return the stored parameters in the shape of the SDK's MetricParam, unset fields as null."""
    return {field: stored.get(field) for field in METRIC_PARAM_FIELDS}


def _require_store(store: MetricParamStore | None) -> MetricParamStore:
    if store is None:
        raise NotImplementedOnBackendError(
            "the metricparam routes are not implemented without a store of metric parameters: the local "
            "backend's state folder (`custom-metrics serve`), or on AWS Lambda the bucket named by "
            "CUSTOM_METRICS_LABEL_STUDIO_BUCKET, which the SAM stack sets"
        )
    return store
