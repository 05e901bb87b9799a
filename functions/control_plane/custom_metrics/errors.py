"""The project's exception hierarchy.

Each class carries the HTTP status that the API returns for it, so one handler maps them all.
Messages state what failed, on which value, and what to do next. Platform failures (a bug here, or
AWS failing in a way the user cannot fix) are not in this hierarchy: the API answers them with a
generic 500 and logs the traceback.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error the caller can act on, with the HTTP status that fits it."""

    status_code = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        body.update(self.details)
        return body


class InvalidInputError(ServiceError):
    """The request or file is malformed: wrong JSON shape, bad name, bad tag."""

    status_code = 400


class MetricSourceError(ServiceError):
    """The metric source fails the check: not UTF-8, too large, syntax error, no `agreement`."""

    status_code = 422


class FunctionNotFoundError(ServiceError):
    """No metric function is deployed under the requested name."""

    status_code = 404


class ConflictError(ServiceError):
    """The function is busy with another change; retrying later succeeds."""

    status_code = 409


class PayloadTooLargeError(ServiceError):
    """The request body or metric source is over a documented size limit."""

    status_code = 413


class ConfigurationError(ServiceError):
    """A required setting of the service is missing or invalid."""

    status_code = 500


class BackendError(ServiceError):
    """The backend failed in a way the caller can act on (named function, named cause, next step)."""

    status_code = 502


class DeploymentFailedError(ServiceError):
    """The function was created or updated but did not become Active."""

    status_code = 502
