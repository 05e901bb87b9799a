"""A small client of the Label Studio REST API, on the standard library's urllib.

Every call sends `Authorization: Token <token>`. HTTP and network failures are translated here,
once, into `LabelStudioError` subclasses whose messages name the URL path and the next step. The
token never appears in a message or a log line.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from custom_metrics.errors import InvalidInputError, ServiceError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
# An export of a large project can take minutes to build on the Label Studio side.
EXPORT_TIMEOUT_SECONDS = 600.0
MAX_DETAIL_CHARS = 300


class LabelStudioError(ServiceError):
    """Label Studio rejected a request or could not be reached."""

    status_code = 502


class LabelStudioAuthError(LabelStudioError):
    """Label Studio rejected the API token (401 or 403)."""


class LabelStudioNotFoundError(LabelStudioError):
    """The task, project or other object does not exist on the Label Studio instance (404)."""

    status_code = 404


@dataclass(frozen=True)
class TaskSnapshot:
    """A task's `data`, `meta` and `updated_at` as read at one moment."""

    id: int
    data: dict[str, Any]
    meta: dict[str, Any]
    updated_at: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskSnapshot:
        return cls(
            id=int(body["id"]),
            data=dict(body.get("data") or {}),
            meta=dict(body.get("meta") or {}),
            updated_at=body.get("updated_at"),
        )


class LabelStudioClient:
    """Calls the Label Studio API at `url` with an API token (legacy token or personal access token)."""

    def __init__(self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.url = normalize_url(url)
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r})"

    # Projects and tasks -------------------------------------------------------------------

    def get_project(self, project: int) -> dict[str, Any]:
        return self._object("GET", f"/api/projects/{project}")

    def get_task(self, task: int) -> TaskSnapshot:
        return TaskSnapshot.from_json(self._object("GET", f"/api/tasks/{task}"))

    def task_annotations(self, task: int) -> list[dict[str, Any]]:
        return self._list("GET", f"/api/tasks/{task}/annotations")

    def task_predictions(self, task: int) -> list[dict[str, Any]]:
        return self._list("GET", "/api/predictions", query={"task": task})

    def update_task(self, task: int, data: dict[str, Any], meta: dict[str, Any]) -> TaskSnapshot:
        """PATCH the task's `data` and `meta`; Label Studio replaces each of them wholesale."""
        body = self._object("PATCH", f"/api/tasks/{task}", body={"data": data, "meta": meta})
        return TaskSnapshot.from_json(body)

    def export_tasks(self, project: int) -> list[dict[str, Any]]:
        """Download every task of the project in Label Studio JSON, with annotations and predictions."""
        query = {"exportType": "JSON", "download_all_tasks": "true"}
        result = self.request("GET", f"/api/projects/{project}/export", query=query, timeout=EXPORT_TIMEOUT_SECONDS)
        if not isinstance(result, list):
            raise LabelStudioError(
                f"the export of Label Studio project {project} at {self.url} is not a list of tasks; "
                "check that the URL points at Label Studio"
            )
        return result

    # Webhooks and views -------------------------------------------------------------------

    def list_webhooks(self, project: int) -> list[dict[str, Any]]:
        return self._list("GET", "/api/webhooks", query={"project": project})

    def create_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object("POST", "/api/webhooks", body=body)

    def update_webhook(self, webhook: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._object("PATCH", f"/api/webhooks/{webhook}", body=body)

    def list_views(self, project: int) -> list[dict[str, Any]]:
        return self._list("GET", "/api/dm/views", query={"project": project})

    def create_view(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object("POST", "/api/dm/views", body=body)

    def update_view(self, view: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._object("PATCH", f"/api/dm/views/{view}", body=body)

    # Transport ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON response (None for an empty body)."""
        address = self.url + path
        if query:
            address += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(address, data=data, method=method)  # noqa: S310 (scheme checked)
        request.add_header("Authorization", f"Token {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        logger.debug("label studio request", extra={"method": method, "path": path})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(method, path, exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({method} {path}): {reason}; "
                "check that it is running and that the URL is right"
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioError(
                f"{method} {path} on {self.url} did not return JSON; check that the URL points at Label Studio"
            ) from None

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result = self.request(method, path, **kwargs)
        if not isinstance(result, dict):
            raise LabelStudioError(
                f"{method} {path} on {self.url} returned {type(result).__name__}, expected an object"
            )
        return result

    def _list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        result = self.request(method, path, **kwargs)
        # Some list endpoints paginate as {"results": [...]} when asked; both shapes are accepted.
        if isinstance(result, dict) and isinstance(result.get("results"), list):
            result = result["results"]
        if not isinstance(result, list):
            raise LabelStudioError(f"{method} {path} on {self.url} returned {type(result).__name__}, expected a list")
        return result

    def _http_error(self, method: str, path: str, exc: urllib.error.HTTPError) -> LabelStudioError:
        detail = _error_detail(exc)
        where = f"{method} {path} on {self.url}"
        if exc.code in (401, 403):
            return LabelStudioAuthError(
                f"Label Studio rejected the API token ({exc.code}) on {where}{detail}; "
                "run `custom-metrics connect` again with a valid token of a user with access to the project"
            )
        if exc.code == 404:
            return LabelStudioNotFoundError(f"not found (404) on {where}{detail}; check the project or task id")
        return LabelStudioError(f"Label Studio returned {exc.code} on {where}{detail}")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"null")
    except (ValueError, OSError):
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str) or not detail:
        return ""
    return f": {detail[:MAX_DETAIL_CHARS]}"


def normalize_url(url: str) -> str:
    """Check that `url` is an http(s) URL and return it without a trailing slash."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(f"Label Studio URL {url!r} is invalid; give the base URL such as http://127.0.0.1:8080")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
