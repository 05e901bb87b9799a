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
from custom_metrics.aggregate import pair_record
from custom_metrics.backends.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    STATUS_ACTIVE,
    TRIAL_FAILED,
    TRIAL_PASSED,
    TRIAL_SKIPPED,
    Backend,
    DeployOutcome,
    FunctionInfo,
    FunctionSpec,
    ProgressCallback,
)
from custom_metrics.deploy_trial import TrialFailedError, VersionTarget, describe_error, recent_sample, trial_pairs
from custom_metrics.errors import FunctionNotFoundError, InvalidInputError, ServiceError
from custom_metrics.packaging import build_package, code_sha256
from custom_metrics.results import agreement_result, pair_payloads, pair_records
from custom_metrics.sandbox import WorkerPool
from custom_metrics.source_check import check_source, require_valid
from custom_metrics.tasks import Export, build_pairs, export_warnings, parse_export
from custom_metrics.trial import PackageRunner, staged_source

logger = logging.getLogger(__name__)

# Lambda's own bounds for a function's timeout (seconds) and memory (MiB).
MIN_TIMEOUT, MAX_TIMEOUT = 1, 900
MIN_MEMORY, MAX_MEMORY = 128, 10240
TRIAL_MAX_PAIRS = 200
# `check` runs the metric on sample pairs to give quick feedback, so its batches get a shorter default
# timeout than a deployed function, and it stops sending pairs after this many of them timed out.
CHECK_TIMEOUT_SECONDS = 10
CHECK_MAX_TIMEOUTS = 2


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
        force: bool = False,
        trial_tasks: Any = None,
    ) -> dict[str, Any]:
        """Check, package and deploy a metric, reporting whether it was created, updated or unchanged.

        A change publishes a new version, which runs a trial (see `custom_metrics.deploy_trial`)
        before `live` moves to it; `force` skips the trial. A failed trial raises TrialFailedError
        and leaves `live` where it was.
        """
        name = self.function_name(project, prefix)
        if trial_tasks is not None:
            parse_export(trial_tasks)  # Reject malformed trial tasks before anything is stored.
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
            DeployOutcome.UNCHANGED: f"{name} is unchanged: the live version has the same code and configuration",
        }
        body: dict[str, Any] = {
            "result": result.outcome.value,
            "message": messages[result.outcome],
            "function": result.function.to_dict(),
            "check": report.to_dict(),
            "trial": None,
        }
        if result.candidate is None:
            return body

        version = result.candidate
        if force:
            trial: dict[str, Any] = {"version": int(version), "outcome": TRIAL_SKIPPED, "reason": "force"}
            body["message"] += f"; version {version} is live without a trial (force)"
        else:
            trial = self._run_trial(name, project, version, source, trial_tasks)
            body["message"] += f"; version {version} passed its trial on {trial['scored']} pairs and is live"
        self.backend.record_trial(name, version, trial["outcome"])
        if trial["outcome"] == TRIAL_FAILED:
            raise _trial_failure(name, version, result.function.version, trial)
        body["function"] = self.backend.set_live(name, version).to_dict()
        body["trial"] = trial
        return body

    def _run_trial(self, name: str, project: str, version: str, source: str, trial_tasks: Any) -> dict[str, Any]:
        """Score the trial pairs on `version` and summarize them; the outcome is passed or failed."""
        origin, _, pairs = trial_pairs(source, trial_tasks, lambda: self.backend.trial_tasks(name))
        request_id = _request_id()
        logger.info(
            "running trial",
            extra={
                "function": name,
                "version": version,
                "pairs": len(pairs),
                "source": origin,
                "request_id": request_id,
            },
        )
        # per_label=True makes the runtime call the metric with per_label False and True for each pair.
        results = orchestrator.score_pairs(
            VersionTarget(self.backend, version),
            name,
            [pair.payload() for pair in pairs],
            per_label=True,
            request_id=request_id,
            project=project,
        )
        records = [pair_record(pair, results.get(pair.id)) for pair in pairs]
        errors = sum(1 for record in records if _failed(record))
        return {
            "version": int(version),
            "outcome": TRIAL_FAILED if errors else TRIAL_PASSED,
            "source": origin,
            "pairs": records,
            "scored": len(records) - errors,
            "errors": errors,
            "request_id": request_id,
        }

    def versions(self, project: str, prefix: str | None = None) -> dict[str, Any]:
        """List the function's versions with their SHA-256, date, trial outcome and which one is live."""
        name = self.function_name(project, prefix)
        versions = self.backend.versions(name)
        live = next((int(version.version) for version in versions if version.live), None)
        return {"function": name, "live_version": live, "versions": [version.to_dict() for version in versions]}

    def rollback(self, project: str, version: int, prefix: str | None = None) -> dict[str, Any]:
        """Move `live` to an existing version without a trial, because each version had one (or force) at deploy."""
        name = self.function_name(project, prefix)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInputError(
                f"version {version!r} is invalid; give a version number from `custom-metrics versions`"
            )
        versions = self.backend.versions(name)
        numbers = [int(entry.version) for entry in versions]
        if version not in numbers:
            listed = ", ".join(str(number) for number in numbers) or "none"
            raise FunctionNotFoundError(
                f"{name} has no version {version} (its versions: {listed}); pick one from `custom-metrics versions`"
            )
        previous = next((int(entry.version) for entry in versions if entry.live), None)
        info = self.backend.set_live(name, str(version))
        return {
            "message": f"{name}: live moved from version {previous} to version {version}",
            "previous_version": previous,
            "function": info.to_dict(),
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

    def check_metric(
        self, project: str, code: str, tasks: Any = None, *, pairs: str = "annotations", timeout: int | None = None
    ) -> dict[str, Any]:
        """Check the source statically and, given tasks, run it on their pairs in the sandbox.

        Each batch of the trial may run `timeout` seconds (default CHECK_TIMEOUT_SECONDS). The trial stops
        after CHECK_MAX_TIMEOUTS pairs time out, so a metric that hangs on every pair fails fast. The
        pairs not run then get a NotRun error. `trial.timed_out` counts the pairs stopped at the timeout.
        """
        naming.function_name(project, self.default_prefix)
        timeout = _bounded("timeout", timeout, CHECK_TIMEOUT_SECONDS, MIN_TIMEOUT, MAX_TIMEOUT, "seconds")
        report = check_source(code)
        body: dict[str, Any] = {"check": report.to_dict(), "valid": report.valid, "trial": None}
        if tasks is None or not report.valid:
            return body

        export = parse_export(tasks)
        selected = build_pairs(export, pairs)[:TRIAL_MAX_PAIRS]
        with staged_source(code) as folder:
            runner = PackageRunner(self._pool_for_trials(), Path(folder), timeout=timeout)
            results = orchestrator.score_pairs(
                runner,
                "trial",
                [pair.payload() for pair in selected],
                per_label=True,  # So that a broken per-label branch shows here as in the deploy trial.
                request_id=_request_id(),
                project=project,
                max_timeouts=CHECK_MAX_TIMEOUTS,
            )
        records = [pair_record(pair, results.get(pair.id)) for pair in selected]
        errors = sum(1 for record in records if _failed(record))
        timed_out = sum(
            1 for record in records if (record["error"] or {}).get("type") in orchestrator.TIMEOUT_ERROR_TYPES
        )
        body["trial"] = {
            "pairs": records,
            "scored": len(records) - errors,
            "errors": errors,
            "timeout": timeout,
            "timed_out": timed_out,
        }
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
        info = self.active_function(name)

        request_id = request_id or _request_id()
        logger.info("scoring", extra={"function": name, "pairs": len(selected), "request_id": request_id})
        results = orchestrator.score_pairs(
            self.backend,
            name,
            pair_payloads(selected, per_control=per_control),
            per_label=per_label,
            request_id=request_id,
            project=project,
            progress=progress,
        )
        records = pair_records(selected, results, per_control=per_control)
        self._keep_trial_sample(name, tasks, export, records, pairs)
        body = agreement_result(
            [task.key for task in export.tasks],
            records,
            function_name=name,
            code_sha256=info.code_sha256,
            pair_mode=pairs,
            per_label=per_label,
            per_control=per_control,
            request_id=request_id,
            warnings=[*export.warnings, *export_warnings(export.tasks, pairs)],
        )
        body["function"]["version"] = int(info.version) if info.version is not None else None
        return body

    def _keep_trial_sample(
        self, name: str, tasks: Any, export: Export, records: list[dict[str, Any]], pair_mode: str
    ) -> None:
        sample = recent_sample(tasks, export, records, pair_mode)
        if sample is None:
            return
        try:
            self.backend.save_trial_tasks(name, sample)
        except OSError as error:
            # The scoring succeeded; losing the sample only makes the next trial fall back to built-in pairs.
            logger.warning("could not keep the trial sample: %s", type(error).__name__, extra={"function": name})

    def active_function(self, name: str) -> FunctionInfo:
        """Return the function `name`, or raise ServiceError unless it is Active and can score pairs."""
        info = self.backend.get(name)
        if info.status != STATUS_ACTIVE:
            reason = f" ({info.status_reason})" if info.status_reason else ""
            raise ServiceError(
                f"metric function {name} is {info.status}{reason}, not Active; redeploy it or wait until it is Active"
            )
        if info.version is None:
            raise FunctionNotFoundError(
                f"metric function {name} has no live version because no deploy of it has passed its trial; "
                "deploy code that passes the trial, or deploy with force"
            )
        return info

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


def _trial_failure(name: str, version: str, live: str | None, trial: dict[str, Any]) -> TrialFailedError:
    failed = [record for record in trial["pairs"] if _failed(record)]
    staying = f"live stays at version {live}" if live is not None else "no version is live yet"
    message = (
        f"version {version} of {name} failed its trial on {len(failed)} of {len(trial['pairs'])} pairs, so {staying}; "
        f"fix the metric and deploy again, or deploy with force: {describe_error(failed[0])}"
    )
    details = {
        "function": name,
        "version": int(version),
        "live_version": int(live) if live is not None else None,
        "trial": trial,
        "errors": [describe_error(record) for record in failed],
    }
    return TrialFailedError(message, details=details)


def _failed(record: dict[str, Any]) -> bool:
    """Tell whether a trial pair failed: its score, or its per-label breakdown."""
    return record["error"] is not None or record.get("per_label_error") is not None


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
