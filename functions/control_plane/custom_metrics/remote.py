"""An HTTP client of a deployed control-plane API, for the CLI's `--endpoint URL`.

`RemoteClient` has the methods of `MetricService` that the CLI calls and returns the same JSON
bodies. Requests are signed with SigV4 (service `execute-api`) for API Gateway's AWS_IAM
authorization whenever AWS credentials are available. Without credentials they go unsigned, which
the stack's API rejects (it requires AWS_IAM) and only the local server accepts.
Error responses are raised as the `ServiceError` subclass of their status, with the API's message.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from custom_metrics.backends.base import ProgressCallback
from custom_metrics.errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    FunctionNotFoundError,
    InvalidInputError,
    MetricSourceError,
    PayloadTooLargeError,
    ServiceError,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 60.0
SIGNING_SERVICE = "execute-api"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_ERRORS_BY_STATUS: dict[int, type[ServiceError]] = {
    400: InvalidInputError,
    404: FunctionNotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: MetricSourceError,
    502: BackendError,
}


class RemoteRequestError(ServiceError):
    """An error status with no class of its own (401, 403, 429, 5xx), kept as the API returned it."""

    def __init__(self, message: str, *, status_code: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.status_code = status_code


class RemoteClient:
    """Calls the routes of a deployed stack; each method returns the route's JSON body."""

    def __init__(
        self,
        endpoint: str,
        *,
        region: str | None = None,
        credentials: Credentials | None = None,
        session: boto3.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigurationError(
                f"endpoint {endpoint!r} is not an http(s) URL; give the ApiUrl output of the stack, "
                "for example https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
            )
        self.endpoint = endpoint.strip().rstrip("/")
        aws_session = session or boto3.Session()
        self._credentials = credentials if credentials is not None else aws_session.get_credentials()
        self._region = region or _region_of(parts.hostname or "") or aws_session.region_name
        self._timeout = timeout
        if self._credentials is not None and not self._region:
            raise ConfigurationError(
                f"cannot tell the AWS region of endpoint {self.endpoint}; set AWS_REGION to the stack's region"
            )

    # Methods of MetricService --------------------------------------------------------------

    def put_metric(
        self,
        project: str,
        *,
        code: str | None = None,
        builtin: str | None = None,
        options: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        prefix: str | None = None,
        timeout: int | None = None,
        memory_size: int | None = None,
        force: bool = False,
        trial_tasks: Any = None,
    ) -> dict[str, Any]:
        body = _without_none(
            code=code,
            builtin=builtin,
            options=options,
            tags=tags,
            prefix=prefix,
            timeout=timeout,
            memory_size=memory_size,
            force=force or None,
            trial_tasks=trial_tasks,
        )
        return self.request("PUT", _project_path(project, "metric"), body=body)

    def versions(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        return self.request("GET", _project_path(project, "metric/versions"), query=_without_none(prefix=prefix))

    def rollback(self, project: str, version: int, prefix: str | None = None) -> dict[str, Any]:
        body = _without_none(version=version, prefix=prefix)
        return self.request("POST", _project_path(project, "metric/rollback"), body=body)

    def get_metric(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        return self.request("GET", _project_path(project, "metric"), query=_without_none(prefix=prefix))

    def delete_metric(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        return self.request("DELETE", _project_path(project, "metric"), query=_without_none(prefix=prefix))

    def list_metrics(self) -> dict[str, Any]:
        return self.request("GET", "/metrics")

    def check_metric(self, project: str, code: str, tasks: Any = None, *, pairs: str = "annotations") -> dict[str, Any]:
        body = _without_none(code=code, tasks=tasks, pairs=pairs)
        return self.request("POST", _project_path(project, "metric/check"), body=body)

    def score(
        self,
        project: str,
        tasks: Any,
        *,
        per_label: bool = False,
        per_control: bool = False,
        pairs: str = "annotations",
        prefix: str | None = None,
        request_id: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Score an export on the deployed stack.

        The API Gateway request id becomes the run's request id, so `request_id` is not sent, and a
        synchronous HTTP request reports no progress, so `progress` is never called.
        """
        body = _without_none(tasks=tasks, per_label=per_label, per_control=per_control, pairs=pairs, prefix=prefix)
        return self.request("POST", _project_path(project, "agreement"), body=body)

    def logs(self, project: str, prefix: str | None, start: float, end: float, limit: int) -> dict[str, Any]:
        query = _without_none(start=f"{start:.3f}", end=f"{end:.3f}", limit=str(limit), prefix=prefix)
        return self.request("GET", _project_path(project, "metric/logs"), query=query)

    def close(self) -> None:
        """Release nothing: each request opens and closes its own connection."""

    # HTTP ----------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send one signed request to the stack and return its JSON body, raising ServiceError on an error."""
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = self._headers(method, url, data)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked
        logger.debug("calling %s %s", method, path)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - scheme checked
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise RemoteRequestError(
                f"could not reach {self.endpoint} ({reason}); check the URL and the network", status_code=502
            ) from error
        parsed = _parse_json(raw)
        if status >= 400:
            raise _error_for(status, parsed, method, path)
        if not isinstance(parsed, dict):
            raise RemoteRequestError(
                f"{method} {path} returned {status} without a JSON object; "
                "check that the endpoint is the stack's ApiUrl",
                status_code=502,
            )
        return parsed

    def _headers(self, method: str, url: str, data: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._credentials is None:
            logger.debug("no AWS credentials found; sending the request unsigned")
            return headers
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_SERVICE, str(self._region)).add_auth(signed)
        return dict(signed.headers.items())


def _project_path(project: str, route: str) -> str:
    return f"/projects/{urllib.parse.quote(project, safe='')}/{route}"


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _region_of(host: str) -> str | None:
    match = _EXECUTE_API_HOST.match(host)
    return match.group(1) if match else None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _error_for(status: int, body: Any, method: str, path: str) -> ServiceError:
    details = dict(body) if isinstance(body, dict) else {}
    message = str(details.pop("message", "") or f"{method} {path} failed with HTTP status {status}")
    if status == 403:
        message += (
            "; API Gateway rejected the request: sign it with AWS credentials of a principal allowed "
            "execute-api:Invoke on this API (set AWS_PROFILE or the AWS_ACCESS_KEY_ID variables)"
        )
    error_class = _ERRORS_BY_STATUS.get(status)
    if error_class is None:
        return RemoteRequestError(message, status_code=status, details=details)
    return error_class(message, details=details)
