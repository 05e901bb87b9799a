"""The local backend: metric functions stored in a directory, run in sandboxed worker processes.

Layout of the state directory, one folder per function:

    functions/<name>/function.json          tags, the versions and which one is live
    functions/<name>/packages/<hex>.zip     a version's package, byte for byte what Lambda gets
    functions/<name>/code/<hex>/metric.py   the package unpacked for the workers
    functions/<name>/trial_tasks.json       a few recently scored tasks, for the next deploy's trial
    functions/<name>/logs/<date>.jsonl      what the workers printed, per UTC day (see `local_logs`)

Every deploy that changes code or configuration adds a numbered version, as Lambda's PublishVersion
does, and `live` moves to it only through `set_live`. Invocations resolve `live` (or a version
number) to that version's unpacked code. Every write goes to a temporary file or folder that is
renamed into place, and function.json is replaced last, so a crash mid-deploy leaves the previous
metric in force. A deploy removes temporary files that an interrupted write left over a minute
earlier. A lock file serializes changes to one function across processes.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custom_metrics.atomic_files import write_atomically
from custom_metrics.backends.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    LIVE_ALIAS,
    STATUS_ACTIVE,
    DeployOutcome,
    DeployResult,
    FunctionInfo,
    FunctionSpec,
    LogRow,
    VersionInfo,
    ensure_same_project,
)
from custom_metrics.backends.local_logs import FunctionLogWriter, read_logs
from custom_metrics.errors import BackendError, FunctionNotFoundError
from custom_metrics.packaging import METRIC_MODULE_FILE, build_package, code_sha256, read_source
from custom_metrics.sandbox import WorkerPool

logger = logging.getLogger(__name__)

STATE_DIR_VARIABLE = "CUSTOM_METRICS_STATE_DIR"
# Lambda's synchronous invocation limit; the local backend keeps it so that a batch that runs
# here also fits through Lambda.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_METADATA_FILE = "function.json"
_TRIAL_TASKS_FILE = "trial_tasks.json"
# A temporary file older than this cannot belong to a write still in progress.
STALE_TEMPORARY_SECONDS = 60.0


def default_state_dir() -> Path:
    """$CUSTOM_METRICS_STATE_DIR, else $XDG_DATA_HOME/custom-metrics, else ~/.local/share/custom-metrics."""
    configured = os.environ.get(STATE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "custom-metrics"


class LocalBackend:
    """Stores functions under `state_dir` and runs them in a pool of sandboxed worker processes."""

    kind = "local"

    def __init__(self, state_dir: Path, *, workers: int | None = None, max_batch_pairs: int = 2000) -> None:
        self.state_dir = Path(state_dir)
        self.functions_dir = self.state_dir / "functions"
        self.max_concurrency = workers or os.cpu_count() or 1
        self.max_batch_pairs = max_batch_pairs
        self.max_batch_bytes = MAX_PAYLOAD_BYTES
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()

    # Storage -------------------------------------------------------------------------------

    def deploy(self, spec: FunctionSpec) -> DeployResult:
        """Store `spec` as a new version unless `live` already serves it; `live` itself does not move."""
        folder = self.functions_dir / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked(folder):
            _remove_stale_temporaries(folder)
            previous = self._read_metadata(spec.name)
            ensure_same_project(spec.name, (previous or {}).get("project"), spec.project)
            metadata = previous or {"name": spec.name, "project": spec.project, "live": None, "versions": []}
            live = _live_entry(metadata)
            serves_spec = live is not None and _same_version(live, spec)
            if serves_spec and metadata.get("tags") == spec.tags:
                logger.info("function unchanged", extra={"function": spec.name, "code_sha256": spec.code_sha256})
                return DeployResult(DeployOutcome.UNCHANGED, self._info(metadata))

            candidate = None if serves_spec else self._store_version(folder, metadata, spec)
            metadata["tags"] = spec.tags
            metadata["last_modified"] = _now()
            self._write_metadata(folder, metadata)

        outcome = DeployOutcome.CREATED if previous is None else DeployOutcome.UPDATED
        logger.info(
            "function %s",
            outcome.value,
            extra={"function": spec.name, "code_sha256": spec.code_sha256, "version": candidate},
        )
        return DeployResult(outcome, self._info(metadata), candidate)

    def _store_version(self, folder: Path, metadata: dict[str, Any], spec: FunctionSpec) -> str:
        """Return the version that contains `spec`: the newest one if it matches, as Lambda does, else a new one."""
        versions: list[dict[str, Any]] = metadata["versions"]
        if versions and _same_version(versions[-1], spec):
            return str(versions[-1]["version"])
        digest_hex = _hex_digest(spec.code_sha256)
        write_atomically(folder / "packages" / f"{digest_hex}.zip", spec.package)
        self._unpack(folder, digest_hex, spec.package)
        number = versions[-1]["version"] + 1 if versions else 1
        versions.append(
            {
                "version": number,
                "code_sha256": spec.code_sha256,
                "package": f"packages/{digest_hex}.zip",
                "code_dir": f"code/{digest_hex}",
                "timeout": spec.timeout,
                "memory_size": spec.memory_size,
                "created": _now(),
                "trial": None,
            }
        )
        return str(number)

    def versions(self, name: str) -> builtins.list[VersionInfo]:
        metadata = self._require_metadata(name)
        return [
            VersionInfo(
                version=str(entry["version"]),
                code_sha256=entry["code_sha256"],
                created=entry["created"],
                trial=entry.get("trial"),
                live=entry["version"] == metadata.get("live"),
            )
            for entry in metadata["versions"]
        ]

    def set_live(self, name: str, version: str) -> FunctionInfo:
        folder = self.functions_dir / name
        with self._locked(folder):
            metadata = self._require_metadata(name)
            entry = _version_entry(metadata, version)
            metadata["live"] = entry["version"]
            metadata["last_modified"] = _now()
            self._write_metadata(folder, metadata)
        logger.info("live version moved", extra={"function": name, "version": version})
        return self._info(metadata)

    def record_trial(self, name: str, version: str, outcome: str) -> None:
        folder = self.functions_dir / name
        with self._locked(folder):
            metadata = self._require_metadata(name)
            _version_entry(metadata, version)["trial"] = outcome
            self._write_metadata(folder, metadata)

    def save_trial_tasks(self, name: str, sample: dict[str, Any]) -> None:
        self._require_metadata(name)
        write_atomically(self.functions_dir / name / _TRIAL_TASKS_FILE, json.dumps(sample).encode())

    def trial_tasks(self, name: str) -> dict[str, Any] | None:
        try:
            sample: dict[str, Any] = json.loads((self.functions_dir / name / _TRIAL_TASKS_FILE).read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            logger.warning("ignoring unreadable trial tasks", extra={"function": name})
            return None
        return sample

    def get(self, name: str) -> FunctionInfo:
        return self._info(self._require_metadata(name), with_source=True)

    def list(self) -> list[FunctionInfo]:
        if not self.functions_dir.is_dir():
            return []
        infos = []
        for folder in sorted(self.functions_dir.iterdir()):
            try:
                metadata = self._read_metadata(folder.name) if folder.is_dir() else None
            except BackendError as exc:
                logger.warning("function left out of the list: %s", exc.message, extra={"function": folder.name})
                continue
            if metadata is not None:
                infos.append(self._info(metadata))
        return infos

    def delete(self, name: str) -> None:
        folder = self.functions_dir / name
        with self._locked(folder):
            # Checked under the lock, so that of two concurrent deletes the second gets "not found".
            if self._read_metadata(name) is None:
                raise _not_found(name)
            # Renaming first makes the function disappear at once even if removal is interrupted.
            trash = self.state_dir / f".deleted-{name}-{uuid.uuid4().hex}"
            folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("function deleted", extra={"function": name})

    # Invocation ----------------------------------------------------------------------------

    def invoke(self, name: str, payload: dict[str, Any], qualifier: str = LIVE_ALIAS) -> dict[str, Any]:
        metadata = self._require_metadata(name)
        if qualifier == LIVE_ALIAS:
            entry = _live_entry(metadata)
            if entry is None:
                raise _no_live_version(name)
        else:
            entry = _version_entry(metadata, qualifier)
        code_dir = self._verified_code_dir(name, entry)
        timeout = float(entry.get("timeout", DEFAULT_TIMEOUT_SECONDS))
        memory = int(entry.get("memory_size", DEFAULT_MEMORY_MB))
        return self.pool.invoke(code_dir, payload, timeout, memory)

    def logs(self, name: str, start: float, end: float, limit: int) -> builtins.list[LogRow]:
        if self._read_metadata(name) is None:
            raise _not_found(name)
        return read_logs(self.functions_dir / name, start, end, limit)

    @property
    def pool(self) -> WorkerPool:
        with self._pool_lock:
            if self._pool is None:
                writer = FunctionLogWriter(self.functions_dir)
                self._pool = WorkerPool(self.max_concurrency, on_output=writer.write)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # Helpers -------------------------------------------------------------------------------

    def _read_metadata(self, name: str) -> dict[str, Any] | None:
        path = self.functions_dir / name / _METADATA_FILE
        try:
            metadata: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackendError(
                f"{path} is damaged ({exc}); restore it from a backup, or delete the folder {path.parent} "
                "and deploy the metric again"
            ) from exc
        return _with_versions(metadata)

    def _require_metadata(self, name: str) -> dict[str, Any]:
        metadata = self._read_metadata(name)
        if metadata is None:
            raise _not_found(name)
        return metadata

    def _write_metadata(self, folder: Path, metadata: dict[str, Any]) -> None:
        write_atomically(folder / _METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True).encode())

    def _info(self, metadata: dict[str, Any], *, with_source: bool = False) -> FunctionInfo:
        # A function whose first version failed its trial has no live version; it shows its newest one.
        live = _live_entry(metadata)
        shown = live if live is not None else metadata["versions"][-1]
        source = None
        if with_source:
            package = (self.functions_dir / metadata["name"] / shown["package"]).read_bytes()
            source = read_source(package)
        return FunctionInfo(
            name=metadata["name"],
            project=metadata.get("project"),
            status=STATUS_ACTIVE,
            code_sha256=shown["code_sha256"],
            tags=metadata.get("tags", {}),
            last_modified=metadata["last_modified"],
            timeout=shown.get("timeout", DEFAULT_TIMEOUT_SECONDS),
            memory_size=shown.get("memory_size", DEFAULT_MEMORY_MB),
            source=source,
            version=str(live["version"]) if live is not None else None,
        )

    def _verified_code_dir(self, name: str, entry: dict[str, Any]) -> Path:
        """Return the version's unpacked code, restored from its package if anything changed it on disk.

        Workers run as the same user as this process, so a metric can rewrite its own metric.py. The
        package is deterministic, so repackaging the file on disk must give the version's SHA-256.
        """
        code_dir: Path = self.functions_dir / name / entry["code_dir"]
        path = code_dir / METRIC_MODULE_FILE
        # Python trusts cached bytecode whose recorded source size and mtime match, which a metric can forge.
        shutil.rmtree(code_dir / "__pycache__", ignore_errors=True)
        try:
            intact = code_sha256(build_package(path.read_text("utf-8"))) == entry["code_sha256"]
        except (OSError, UnicodeDecodeError):
            intact = False
        if not intact:
            package = (self.functions_dir / name / entry["package"]).read_bytes()
            if code_sha256(package) != entry["code_sha256"]:
                raise BackendError(
                    f"the stored package of {name} does not match its SHA-256 {entry['code_sha256']}; "
                    "deploy the metric again"
                )
            logger.warning("metric code changed on disk; restored from its package", extra={"function": name})
            write_atomically(path, read_source(package).encode("utf-8"))
        return code_dir

    def _unpack(self, folder: Path, digest_hex: str, package: bytes) -> None:
        target = folder / "code" / digest_hex
        if (target / METRIC_MODULE_FILE).is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
        (staging / METRIC_MODULE_FILE).write_text(read_source(package), "utf-8")
        try:
            staging.rename(target)
        except OSError:
            # Another process unpacked the same package first; its copy is identical.
            shutil.rmtree(staging, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        lock_path = self.state_dir / ".locks" / f"{folder.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _same_version(entry: dict[str, Any], spec: FunctionSpec) -> bool:
    return (
        entry.get("code_sha256") == spec.code_sha256
        and entry.get("timeout") == spec.timeout
        and entry.get("memory_size") == spec.memory_size
    )


def _with_versions(metadata: dict[str, Any]) -> dict[str, Any]:
    """Read a function.json written before versions existed as one version that is live."""
    if "versions" in metadata:
        return metadata
    entry = {key: metadata.pop(key) for key in ("code_sha256", "package", "code_dir", "timeout", "memory_size")}
    entry.update(version=1, created=metadata.get("last_modified", ""), trial=None)
    return {**metadata, "live": 1, "versions": [entry]}


def _live_entry(metadata: dict[str, Any]) -> dict[str, Any] | None:
    live = metadata.get("live")
    return None if live is None else _version_entry(metadata, str(live))


def _version_entry(metadata: dict[str, Any], version: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = metadata["versions"]
    for entry in entries:
        if str(entry["version"]) == version:
            return entry
    raise FunctionNotFoundError(
        f"function {metadata['name']!r} has no version {version!r}; list its versions with `custom-metrics versions`"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files and folders of writes interrupted more than STALE_TEMPORARY_SECONDS ago."""
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    # Every temporary name starts with a dot (see _write_atomically and _unpack); nothing else there does.
    for parent in (folder, folder / "packages", folder / "code"):
        for path in parent.glob(".*"):
            try:
                if path.lstat().st_mtime >= cutoff:
                    continue  # possibly a write in progress in another process
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            logger.info("removed a stale temporary file", extra={"path": str(path)})


def _hex_digest(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


def _no_live_version(name: str) -> FunctionNotFoundError:
    return FunctionNotFoundError(
        f"metric function {name!r} has no live version because no deploy of it has passed its trial; "
        "deploy code that passes the trial, or deploy with --force"
    )


def _not_found(name: str) -> FunctionNotFoundError:
    return FunctionNotFoundError(
        f"no metric function named {name!r} is deployed; deploy one with "
        "`custom-metrics deploy` or PUT /projects/{project}/metric"
    )
