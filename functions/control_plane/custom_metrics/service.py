"""The control plane's operations, shared by the API routes (Lambda and local server) and the CLI.

Each public method returns the JSON-ready body of its response. Errors are raised as
`custom_metrics.errors.ServiceError` subclasses, which carry their HTTP status.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custom_metrics import naming, orchestrator
from custom_metrics.aggregate import aggregate, pair_record
from custom_metrics.backends.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    STATUS_ACTIVE,
    Backend,
    DeployOutcome,
    FunctionSpec,
    ProgressCallback,
)
from custom_metrics.errors import InvalidInputError, ServiceError
from custom_metrics.packaging import build_package, code_sha256
from custom_metrics.sandbox import WorkerPool
from custom_metrics.source_check import check_source, require_valid
from custom_metrics.tasks import Pair, build_pairs, control_pair_id, parse_export
from custom_metrics.trial import PackageRunner, staged_source

logger = logging.getLogger(__name__)

# Lambda's own bounds for a function's timeout (seconds) and memory (MiB).
MIN_TIMEOUT, MAX_TIMEOUT = 1, 900
MIN_MEMORY, MAX_MEMORY = 128, 10240
TRIAL_MAX_PAIRS = 200


class MetricService:
    """Deploys, describes, deletes, checks and runs metric functions on one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        default_prefix: str | None = None,
        trial_pool_factory: Callable[[], WorkerPool] | None = None,
    ) -> None:
        self.backend = backend
        self.default_prefix = default_prefix or None
        self._trial_pool_factory = trial_pool_factory or (lambda: WorkerPool(1))
        self._trial_pool: WorkerPool | None = None
        self._trial_lock = threading.Lock()

    def function_name(self, project: str, prefix: str | None = None) -> str:
        return naming.function_name(project, prefix if prefix is not None else self.default_prefix)

    # Lifecycle -----------------------------------------------------------------------------

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
    ) -> dict[str, Any]:
        """Check, package and deploy a metric, reporting whether it was created, updated or unchanged."""
        name = self.function_name(project, prefix)
        user_tags = naming.validate_tags(tags or {})
        timeout = _bounded("timeout", timeout, DEFAULT_TIMEOUT_SECONDS, MIN_TIMEOUT, MAX_TIMEOUT, "seconds")
        memory_size = _bounded("memory_size", memory_size, DEFAULT_MEMORY_MB, MIN_MEMORY, MAX_MEMORY, "MiB")
        source = _metric_source(code, builtin, options)
        report = require_valid(source)

        package = build_package(source)
        spec = FunctionSpec(
            name=name,
            project=project,
            package=package,
            code_sha256=code_sha256(package),
            source=source,
            tags={**user_tags, **naming.managed_tags(project)},
            timeout=timeout,
            memory_size=memory_size,
        )
        result = self.backend.deploy(spec)
        messages = {
            DeployOutcome.CREATED: f"created {name}",
            DeployOutcome.UPDATED: f"updated {name}",
            DeployOutcome.UNCHANGED: f"{name} is unchanged: the same code and configuration are already deployed",
        }
        return {
            "result": result.outcome.value,
            "message": messages[result.outcome],
            "function": result.function.to_dict(),
            "check": report.to_dict(),
        }

    def get_metric(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        info = self.backend.get(self.function_name(project, prefix))
        return {"function": info.to_dict(include_source=True)}

    def delete_metric(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        name = self.function_name(project, prefix)
        self.backend.delete(name)
        return {"deleted": name}

    def list_metrics(self) -> dict[str, Any]:
        return {"functions": [info.to_dict() for info in self.backend.list()]}

    def logs(self, project: str, prefix: str | None, start: float, end: float, limit: int) -> dict[str, Any]:
        name = self.function_name(project, prefix)
        if end < start:
            raise InvalidInputError(f"end ({end}) is before start ({start}); give start <= end as Unix seconds")
        rows = self.backend.logs(name, start, end, limit)
        return {
            "function": name,
            "rows": [
                {"timestamp": row.timestamp, "message": row.message, "request_id": row.request_id} for row in rows
            ],
        }

    # Checking and scoring ------------------------------------------------------------------

    def check_metric(self, project: str, code: str, tasks: Any = None, *, pairs: str = "annotations") -> dict[str, Any]:
        """Check the source statically and, given tasks, run it on their pairs in the sandbox."""
        naming.function_name(project, self.default_prefix)
        report = check_source(code)
        body: dict[str, Any] = {"check": report.to_dict(), "valid": report.valid, "trial": None}
        if tasks is None or not report.valid:
            return body

        export = parse_export(tasks)
        selected = build_pairs(export, pairs)[:TRIAL_MAX_PAIRS]
        with staged_source(code) as folder:
            runner = PackageRunner(self._pool_for_trials(), Path(folder))
            results = orchestrator.score_pairs(
                runner,
                "trial",
                [pair.payload() for pair in selected],
                per_label=False,
                request_id=_request_id(),
                project=project,
            )
        records = [pair_record(pair, results.get(pair.id)) for pair in selected]
        errors = sum(1 for record in records if record["error"] is not None)
        body["trial"] = {"pairs": records, "scored": len(records) - errors, "errors": errors}
        body["valid"] = errors == 0
        return body

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
        """Score every pair of the export with the project's metric and aggregate the results.

        With `per_control`, each pair is also scored once per control with both annotations
        restricted to that control's results, which costs one more call per control and pair.
        """
        name = self.function_name(project, prefix)
        export = parse_export(tasks)
        selected = build_pairs(export, pairs)
        info = self.backend.get(name)
        if info.status != STATUS_ACTIVE:
            reason = f" ({info.status_reason})" if info.status_reason else ""
            raise ServiceError(
                f"metric function {name} is {info.status}{reason}, not Active; redeploy it or wait until it is Active"
            )

        request_id = request_id or _request_id()
        logger.info("scoring", extra={"function": name, "pairs": len(selected), "request_id": request_id})
        payloads = [pair.payload() for pair in selected]
        if per_control:
            payloads += [pair.control_payload(control) for pair in selected for control in pair.controls()]
        results = orchestrator.score_pairs(
            self.backend,
            name,
            payloads,
            per_label=per_label,
            request_id=request_id,
            project=project,
            progress=progress,
        )
        records = [_record(pair, results, per_control) for pair in selected]
        body = aggregate([task.key for task in export.tasks], records)
        return {
            "agreement": body.pop("agreement"),
            "function": {"name": name, "code_sha256": info.code_sha256},
            "pair_mode": pairs,
            "per_label": per_label,
            "per_control": per_control,
            "request_id": request_id,
            **body,
            "warnings": export.warnings,
        }

    def _pool_for_trials(self) -> WorkerPool:
        pool = getattr(self.backend, "pool", None)
        if isinstance(pool, WorkerPool):
            return pool
        with self._trial_lock:
            if self._trial_pool is None:
                self._trial_pool = self._trial_pool_factory()
            return self._trial_pool

    def close(self) -> None:
        with self._trial_lock:
            if self._trial_pool is not None:
                self._trial_pool.close()
                self._trial_pool = None
        closer = getattr(self.backend, "close", None)
        if callable(closer):
            closer()


def _record(pair: Pair, results: dict[str, Any], per_control: bool) -> dict[str, Any]:
    controls = None
    if per_control:
        controls = {control: results.get(control_pair_id(pair.id, control)) for control in pair.controls()}
    return pair_record(pair, results.get(pair.id), controls)


def _metric_source(code: str | None, builtin: str | None, options: dict[str, Any] | None) -> str:
    if (code is None) == (builtin is None):
        raise InvalidInputError("give exactly one of `code` (the metric source) or `builtin` (a built-in metric name)")
    if builtin is not None:
        from custom_metrics import builtins

        return builtins.render(builtin, options)
    if options:
        raise InvalidInputError("`options` apply to built-in metrics only; put settings for your own code in the code")
    assert code is not None
    return code


def _bounded(field: str, value: int | None, default: int, low: int, high: int, unit: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{field} {value!r} is invalid; give a whole number of {unit} from {low} to {high}")
    return value


def _request_id() -> str:
    return uuid.uuid4().hex
