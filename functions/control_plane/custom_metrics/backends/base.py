"""The interface every backend implements, and the values that cross it.

A backend stores metric functions (a deterministic zip package plus configuration and tags) and
invokes them on batches of annotation pairs. The control plane (`custom_metrics.service`) contains no
backend-specific logic: the local backend and the Lambda backend are interchangeable behind this
protocol.

Invocation payload, the same for both backends and read by `custom_metrics_runtime.handler`:

    {"pairs": [{"id": str, "annotation_1": {...}, "annotation_2": {...}}, ...],
     "per_label": bool, "request_id": str, "project": str}

Invocation response:

    {"results": [{"id": str, "score": float | None, "per_label": {str: float} | None,
                  "error": None | {"type": str, "message": str, "line": int | None}}, ...],
     "not_run": [str, ...]}

`not_run` lists the ids of pairs the runtime did not reach before its deadline; the caller sends
them again in a new batch.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from custom_metrics.errors import ConflictError

# Lambda's status names, used by both backends so that clients see one vocabulary.
STATUS_NOT_DEPLOYED = "NotDeployed"
STATUS_PENDING = "Pending"
STATUS_ACTIVE = "Active"
STATUS_INACTIVE = "Inactive"
STATUS_FAILED = "Failed"

DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_MEMORY_MB = 1024

# The alias that every scoring invocation goes through; a deploy moves it after the new version's trial.
LIVE_ALIAS = "live"
# Outcomes of the trial run that a version gets before `live` moves to it.
TRIAL_PASSED = "passed"
TRIAL_FAILED = "failed"
TRIAL_SKIPPED = "skipped"


@dataclass(frozen=True)
class FunctionSpec:
    """The deploy request: one metric function with its code, configuration and tags."""

    name: str
    project: str
    package: bytes
    code_sha256: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    memory_size: int = DEFAULT_MEMORY_MB


@dataclass(frozen=True)
class FunctionInfo:
    """A deployed function as the backend reports it."""

    name: str
    status: str
    code_sha256: str
    tags: dict[str, str]
    last_modified: str
    timeout: int
    memory_size: int
    status_reason: str | None = None
    source: str | None = None
    project: str | None = None
    # The version `live` points at, or None when no version has gone live yet. `code_sha256`,
    # `timeout`, `memory_size` and `source` describe that version when it is set.
    version: str | None = None
    # The state of a deploy newer than `live` (Pending while it runs, Failed when it stopped half
    # way) with its reason; None when there is none. The live version keeps serving meanwhile.
    deploy_status: str | None = None
    deploy_status_reason: str | None = None

    def to_dict(self, *, include_source: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "project": self.project,
            "status": self.status,
            "status_reason": self.status_reason,
            "version": self.version,
            "deploy_status": self.deploy_status,
            "deploy_status_reason": self.deploy_status_reason,
            "code_sha256": self.code_sha256,
            "tags": dict(sorted(self.tags.items())),
            "last_modified": self.last_modified,
            "timeout": self.timeout,
            "memory_size": self.memory_size,
        }
        if include_source:
            body["source"] = self.source
        return body


class DeployOutcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class DeployResult:
    outcome: DeployOutcome
    function: FunctionInfo
    # The version that contains the requested code and configuration and waits for its trial. It is
    # None when `live` already serves them, because the deploy is unchanged or changed tags only.
    candidate: str | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One published version of a function."""

    version: str
    code_sha256: str
    created: str
    trial: str | None
    live: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": int(self.version),
            "code_sha256": self.code_sha256,
            "created": self.created,
            "trial": self.trial,
            "live": self.live,
        }


@dataclass(frozen=True)
class LogRow:
    timestamp: str
    message: str
    request_id: str | None


def ensure_same_project(name: str, owner: str | None, project: str) -> None:
    """Raise ConflictError when function `name` already belongs to another project.

    `custom-metric-<prefix>-<project>` can name two projects: project `a-b` without a prefix and
    project `b` with prefix `a`. The project recorded on the function distinguishes them.
    """
    if owner is not None and owner != project:
        raise ConflictError(
            f"function {name} already contains the metric of project {owner!r}, so it cannot also contain "
            f"project {project!r}'s; choose another prefix for project {project!r}"
        )


class BatchFailedError(Exception):
    """One invocation failed as a whole: a timeout, a crash, an out-of-memory kill, a FunctionError.

    `culprit_id` names the pair that was running when the failure happened, when the backend can
    tell (the local worker reports the pair it is on); otherwise it is None and the caller bisects
    the batch to find the pair. `reason` is one of "timeout", "crash", "memory", "function_error", "payload_too_large".
    """

    def __init__(self, reason: str, message: str, *, culprit_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.culprit_id = culprit_id


class ThrottledError(Exception):
    """The backend asked us to slow down (Lambda's TooManyRequestsException, a 5xx); retry later."""


ProgressCallback = Callable[[int, int], None]


class Backend(Protocol):
    """Stores and runs metric functions."""

    kind: str
    max_concurrency: int
    max_batch_pairs: int
    max_batch_bytes: int

    def deploy(self, spec: FunctionSpec) -> DeployResult: ...

    def get(self, name: str) -> FunctionInfo:
        """Return the function, or raise FunctionNotFoundError."""
        ...

    def list(self) -> list[FunctionInfo]: ...

    def delete(self, name: str) -> None:
        """Delete the function, or raise FunctionNotFoundError."""
        ...

    def invoke(self, name: str, payload: dict[str, Any], qualifier: str = LIVE_ALIAS) -> dict[str, Any]:
        """Run one batch on a version number or `live`; return the runtime's response.

        Raises BatchFailedError or ThrottledError as described above.
        """
        ...

    def versions(self, name: str) -> builtins.list[VersionInfo]:
        """List the published versions, oldest first, or raise FunctionNotFoundError."""
        ...

    def set_live(self, name: str, version: str) -> FunctionInfo:
        """Point `live` at `version` (which must exist) and return the function as it now serves."""
        ...

    def record_trial(self, name: str, version: str, outcome: str) -> None: ...

    def save_trial_tasks(self, name: str, sample: dict[str, Any]) -> None:
        """Keep `sample` ({"pair_mode", "tasks"}) for the next deploy's trial; a backend may ignore it."""
        ...

    def trial_tasks(self, name: str) -> dict[str, Any] | None: ...

    def logs(self, name: str, start: float, end: float, limit: int) -> builtins.list[LogRow]: ...
