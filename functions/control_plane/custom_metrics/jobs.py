"""Agreement jobs: score a large export in the background and report progress until the result is ready.

A job scores the same pairs and returns the same result JSON as `MetricService.score`. Both backends
report a job's state in one JSON shape (`job_status`):

    {"job_id": str, "project": str, "function": str,
     "status": "awaiting_upload" | "queued" | "running" | "succeeded" | "failed",
     "created_at": str, "updated_at": str,
     "progress": {"pairs_total": int | null, "pairs_done": int, "pairs_failed": int},
     "error": str | null, "result": {...} | null, "result_url": str | null}

`pairs_total` counts every scored payload, so with `per_control` it includes one pair per control.
The local backend runs a job in a thread of the serving process (or in a detached `custom-metrics`
process started by `agreement --async`) and keeps it under `<state dir>/jobs/<id>/`:

    status.json   the status above without `result`, replaced atomically on every change
    tasks.json    the export, kept only for a job run by a detached process
    result.json   the result JSON, written atomically before status.json reports "succeeded"

The Lambda backend runs a job as a Step Functions execution (`custom_metrics.aws_jobs`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import orjson

from custom_metrics.atomic_files import write_atomically
from custom_metrics.backends.base import Backend
from custom_metrics.errors import InvalidInputError, ServiceError
from custom_metrics.results import pair_payloads
from custom_metrics.service import MetricService
from custom_metrics.tasks import build_pairs, parse_export

logger = logging.getLogger(__name__)

STATUS_AWAITING_UPLOAD = "awaiting_upload"
STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"
FINISHED_STATUSES = frozenset({STATUS_SUCCEEDED, STATUS_FAILED})

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
# A running job rewrites its status file at most this often, so progress costs little I/O.
PROGRESS_INTERVAL_SECONDS = 0.2


class JobNotFoundError(ServiceError):
    """No agreement job has the requested id."""

    status_code = 404


@dataclass(frozen=True)
class JobOptions:
    """The scoring options of a job, the same as those of the synchronous route."""

    per_label: bool = False
    per_control: bool = False
    pairs: str = "annotations"
    prefix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_label": self.per_label,
            "per_control": self.per_control,
            "pairs": self.pairs,
            "prefix": self.prefix,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobOptions:
        return cls(
            per_label=bool(values.get("per_label", False)),
            per_control=bool(values.get("per_control", False)),
            pairs=str(values.get("pairs", "annotations")),
            prefix=values.get("prefix"),
        )


class JobService(Protocol):
    """The job operations of one backend, as the job routes call them."""

    def create(self, project: str, tasks: Any, options: JobOptions, request_id: str) -> dict[str, Any]:
        """Create a job; start it when `tasks` are given, else return where to upload them."""
        ...

    def start(self, job_id: str) -> dict[str, Any]:
        """Start a job whose tasks were uploaded; return its status."""
        ...

    def status(self, job_id: str) -> dict[str, Any]:
        """Return the job's status, with the result (or a URL to it) once it succeeded."""
        ...


def new_job_id() -> str:
    return uuid.uuid4().hex


def require_job_id(job_id: str) -> str:
    """Return `job_id` when it has the form of a job id; raise JobNotFoundError otherwise."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise JobNotFoundError(f"no agreement job has the id {job_id[:80]!r}; a job id is 32 hexadecimal digits")
    return job_id


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def job_status(
    job_id: str,
    *,
    project: str,
    function: str,
    status: str,
    created_at: str,
    pairs_total: int | None,
    pairs_done: int = 0,
    pairs_failed: int = 0,
    error: str | None = None,
    updated_at: str | None = None,
) -> dict[str, Any]:
    """Build a job's status JSON without its result (see the module docstring)."""
    return {
        "job_id": job_id,
        "project": project,
        "function": function,
        "status": status,
        "created_at": created_at,
        "updated_at": updated_at or now_iso(),
        "progress": {"pairs_total": pairs_total, "pairs_done": pairs_done, "pairs_failed": pairs_failed},
        "error": error,
        "result": None,
        "result_url": None,
    }


def count_payloads(tasks: Any, options: JobOptions) -> int:
    """Check the export and count the payloads a job will score; raise InvalidInputError for a malformed export."""
    selected = build_pairs(parse_export(tasks), options.pairs)
    return len(pair_payloads(selected, per_control=options.per_control))


def job_service_for(service: MetricService) -> JobService:
    """Return the job implementation of the service's backend, one per service."""
    with _registry_lock:
        jobs = _registry.get(service)
        if jobs is None:
            jobs = _build_job_service(service)
            _registry[service] = jobs
        return jobs


_registry: weakref.WeakKeyDictionary[MetricService, JobService] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _build_job_service(service: MetricService) -> JobService:
    from custom_metrics.backends.local import LocalBackend

    if isinstance(service.backend, LocalBackend):
        return LocalJobs(service, LocalJobStore(service.backend.state_dir))
    from custom_metrics.aws_jobs import AwsJobs, JobSettings

    return AwsJobs(service, JobSettings.from_environment())


# Local backend ---------------------------------------------------------------------------------


class LocalJobStore:
    """The files of local jobs under `<state_dir>/jobs/<id>/`, each replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.folder / require_job_id(job_id)

    def write_status(self, status: dict[str, Any]) -> None:
        body = {key: value for key, value in status.items() if key != "result"}
        # Progress is rewritten often and can be recomputed, so it skips the sync to disk.
        write_atomically(
            self.job_dir(status["job_id"]) / "status.json",
            orjson.dumps(body, option=orjson.OPT_INDENT_2),
            durable=False,
        )

    def read_status(self, job_id: str) -> dict[str, Any]:
        try:
            raw = (self.job_dir(job_id) / "status.json").read_bytes()
        except FileNotFoundError:
            raise JobNotFoundError(
                f"no agreement job {job_id} in {self.folder}; check the id and the state directory"
            ) from None
        status: dict[str, Any] = orjson.loads(raw)
        return status

    def write_tasks(self, job_id: str, tasks: Any) -> None:
        write_atomically(self.job_dir(job_id) / "tasks.json", orjson.dumps(tasks), durable=True)

    def read_tasks(self, job_id: str) -> Any:
        return orjson.loads((self.job_dir(job_id) / "tasks.json").read_bytes())

    def remove_tasks(self, job_id: str) -> None:
        (self.job_dir(job_id) / "tasks.json").unlink(missing_ok=True)

    def write_result(self, job_id: str, result: dict[str, Any]) -> None:
        write_atomically(self.job_dir(job_id) / "result.json", orjson.dumps(result), durable=True)

    def read_result(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads((self.job_dir(job_id) / "result.json").read_bytes())
        return result


class LocalJobs:
    """Runs agreement jobs of the local backend in background threads of this process."""

    def __init__(
        self, service: MetricService, store: LocalJobStore, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.service = service
        self.store = store
        self._clock = clock

    def create(self, project: str, tasks: Any, options: JobOptions, request_id: str) -> dict[str, Any]:
        if tasks is None:
            raise InvalidInputError(
                "the local backend takes the export inline: send it as `tasks` (uploads through a presigned URL "
                "need the AWS backend)"
            )
        status = self.prepare(project, tasks, options, request_id, keep_tasks=False)
        thread = threading.Thread(
            target=self.run,
            args=(status["job_id"], tasks),
            name=f"custom-metrics-job-{status['job_id'][:8]}",
            daemon=True,
        )
        thread.start()
        return status

    def prepare(
        self, project: str, tasks: Any, options: JobOptions, request_id: str, *, keep_tasks: bool
    ) -> dict[str, Any]:
        """Check the export and the function, then store the queued job; `keep_tasks` saves the export for `run`."""
        total = count_payloads(tasks, options)
        name = self.service.function_name(project, options.prefix)
        self.service.active_function(name)
        job_id = new_job_id()
        status = job_status(
            job_id, project=project, function=name, status=STATUS_QUEUED, created_at=now_iso(), pairs_total=total
        )
        status["options"] = options.to_dict()
        status["request_id"] = request_id
        # A job run by a thread of this process records its pid now. A detached runner records its own when it
        # starts, so a queued job without a pid is not reported failed while that process starts.
        status["pid"] = None if keep_tasks else os.getpid()
        if keep_tasks:
            self.store.write_tasks(job_id, tasks)
        self.store.write_status(status)
        logger.info("job queued", extra={"job_id": job_id, "function": name, "request_id": request_id})
        return _public(status)

    def start(self, job_id: str) -> dict[str, Any]:
        raise InvalidInputError(
            f"job {require_job_id(job_id)} needs no start on the local backend: it starts when it is created"
        )

    def run(self, job_id: str, tasks: Any = None) -> None:
        """Score the job's export, writing progress and then the result or the error to the job's status.

        A failure while scoring is recorded in the status, not raised. A failure to read or write the
        job's own files is raised.
        """
        status = self.store.read_status(job_id)
        status.update(status=STATUS_RUNNING, pid=os.getpid(), updated_at=now_iso())
        self.store.write_status(status)
        counter = _ErrorCounter(self.service.backend)
        scorer = MetricService(cast(Backend, counter), default_prefix=self.service.default_prefix)
        progress = _ProgressWriter(self.store, status, counter, self._clock)
        options = JobOptions.from_dict(status["options"])
        try:
            export = tasks if tasks is not None else self.store.read_tasks(job_id)
            result = scorer.score(
                status["project"],
                export,
                per_label=options.per_label,
                per_control=options.per_control,
                pairs=options.pairs,
                prefix=options.prefix,
                request_id=status["request_id"],
                progress=progress,
            )
        except ServiceError as error:
            self._fail(status, error.message)
            return
        except Exception as error:  # A background job records every failure in its status.
            logger.exception("job failed", extra={"job_id": job_id, "request_id": status["request_id"]})
            self._fail(status, f"internal error ({type(error).__name__}); the service log has the traceback")
            return
        self.store.write_result(job_id, result)
        status["progress"].update(pairs_done=progress.done, pairs_failed=result["errors"])
        status.update(status=STATUS_SUCCEEDED, updated_at=now_iso())
        self.store.write_status(status)
        self.store.remove_tasks(job_id)
        logger.info("job succeeded", extra={"job_id": job_id, "request_id": status["request_id"]})

    def status(self, job_id: str) -> dict[str, Any]:
        status = self.store.read_status(job_id)
        if status["status"] in (STATUS_QUEUED, STATUS_RUNNING) and not _process_alive(status.get("pid")):
            status.update(
                status=STATUS_FAILED,
                error=(
                    f"the process that ran the job (pid {status['pid']}) ended before the job finished; "
                    "start the job again"
                ),
            )
        body = _public(status)
        if status["status"] == STATUS_SUCCEEDED:
            body["result"] = self.store.read_result(job_id)
        return body

    def _fail(self, status: dict[str, Any], message: str) -> None:
        status.update(status=STATUS_FAILED, error=message, updated_at=now_iso())
        self.store.write_status(status)
        logger.warning("job failed: %s", message, extra={"job_id": status["job_id"]})


class _ErrorCounter:
    """A backend proxy that counts the pair errors in each response, for progress while a job runs.

    Errors that the orchestrator makes itself (oversized pairs, timeouts, crashes) appear in the count only
    when the job finishes, from the result.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self.pairs_failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def invoke(self, name: str, payload: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = self._backend.invoke(name, payload, *args, **kwargs)
        results = response.get("results") if isinstance(response, dict) else None
        errors = sum(1 for item in results or [] if isinstance(item, dict) and item.get("error"))
        with self._lock:
            self.pairs_failed += errors
        return response


class _ProgressWriter:
    """The orchestrator's progress callback: stores pairs done and failed, at most every interval."""

    def __init__(
        self, store: LocalJobStore, status: dict[str, Any], counter: _ErrorCounter, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.status = status
        self.counter = counter
        self.clock = clock
        self.done = 0
        self._written_at: float | None = None

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        now = self.clock()
        if self._written_at is not None and now - self._written_at < PROGRESS_INTERVAL_SECONDS and done < total:
            return
        self._written_at = now
        self.status["progress"].update(pairs_total=total, pairs_done=done, pairs_failed=self.counter.pairs_failed)
        self.status["updated_at"] = now_iso()
        self.store.write_status(self.status)


def _public(status: dict[str, Any]) -> dict[str, Any]:
    """Drop the fields kept for the runner (options, request id, pid) and add the result fields."""
    body = {key: value for key, value in status.items() if key not in ("options", "request_id", "pid")}
    body.setdefault("result", None)
    body.setdefault("result_url", None)
    return body


def _process_alive(pid: Any) -> bool:
    if pid is None:
        return True
    # NOTE: a pid reused by an unrelated process after the runner died makes a dead job look alive.
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
