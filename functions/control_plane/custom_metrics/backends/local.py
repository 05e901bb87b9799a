"""The local backend: metric functions stored in a directory, run in sandboxed worker processes.

Layout of the state directory, one folder per function:

    functions/<name>/function.json          configuration, tags, code SHA-256, last modified
    functions/<name>/packages/<hex>.zip     the deployed package, byte for byte what Lambda gets
    functions/<name>/code/<hex>/metric.py   the package unpacked for the workers

Every write goes to a temporary file or folder that is renamed into place, and function.json is
replaced last, so a crash mid-deploy leaves the previous metric in force. A lock file serializes
deploys and deletes of one function across processes.
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
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custom_metrics.backends.base import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    STATUS_ACTIVE,
    DeployOutcome,
    DeployResult,
    FunctionInfo,
    FunctionSpec,
    LogRow,
)
from custom_metrics.errors import FunctionNotFoundError
from custom_metrics.packaging import METRIC_MODULE_FILE, read_source
from custom_metrics.sandbox import WorkerPool

logger = logging.getLogger(__name__)

STATE_DIR_VARIABLE = "CUSTOM_METRICS_STATE_DIR"
# Lambda's synchronous invocation limit; the local backend keeps it so that a batch that runs
# here also fits through Lambda.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_METADATA_FILE = "function.json"


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
        folder = self.functions_dir / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked(folder):
            previous = self._read_metadata(spec.name)
            if previous is not None and _same_deployment(previous, spec):
                logger.info("function unchanged", extra={"function": spec.name, "code_sha256": spec.code_sha256})
                return DeployResult(DeployOutcome.UNCHANGED, self._info(previous))

            digest_hex = _hex_digest(spec.code_sha256)
            _write_atomically(folder / "packages" / f"{digest_hex}.zip", spec.package)
            self._unpack(folder, digest_hex, spec.package)
            metadata = {
                "name": spec.name,
                "project": spec.project,
                "code_sha256": spec.code_sha256,
                "package": f"packages/{digest_hex}.zip",
                "code_dir": f"code/{digest_hex}",
                "tags": spec.tags,
                "timeout": spec.timeout,
                "memory_size": spec.memory_size,
                "last_modified": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write_atomically(folder / _METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True).encode())
            self._remove_stale_versions(folder, keep=digest_hex)

        outcome = DeployOutcome.CREATED if previous is None else DeployOutcome.UPDATED
        logger.info("function %s", outcome.value, extra={"function": spec.name, "code_sha256": spec.code_sha256})
        return DeployResult(outcome, self._info(metadata))

    def get(self, name: str) -> FunctionInfo:
        metadata = self._read_metadata(name)
        if metadata is None:
            raise _not_found(name)
        return self._info(metadata, with_source=True)

    def list(self) -> list[FunctionInfo]:
        if not self.functions_dir.is_dir():
            return []
        infos = []
        for folder in sorted(self.functions_dir.iterdir()):
            metadata = self._read_metadata(folder.name) if folder.is_dir() else None
            if metadata is not None:
                infos.append(self._info(metadata))
        return infos

    def delete(self, name: str) -> None:
        folder = self.functions_dir / name
        if self._read_metadata(name) is None:
            raise _not_found(name)
        with self._locked(folder):
            # Renaming first makes the function disappear at once even if removal is interrupted.
            trash = self.state_dir / f".deleted-{name}-{uuid.uuid4().hex}"
            folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("function deleted", extra={"function": name})

    # Invocation ----------------------------------------------------------------------------

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        metadata = self._read_metadata(name)
        if metadata is None:
            raise _not_found(name)
        code_dir = self.functions_dir / name / metadata["code_dir"]
        timeout = float(metadata.get("timeout", DEFAULT_TIMEOUT_SECONDS))
        memory = int(metadata.get("memory_size", DEFAULT_MEMORY_MB))
        return self.pool.invoke(code_dir, payload, timeout, memory)

    def logs(self, name: str, start: float, end: float, limit: int) -> builtins.list[LogRow]:
        if self._read_metadata(name) is None:
            raise _not_found(name)
        # NOTE: the local backend keeps no log history; worker output goes to the server's stderr.
        return []

    @property
    def pool(self) -> WorkerPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(self.max_concurrency)
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
        return metadata

    def _info(self, metadata: dict[str, Any], *, with_source: bool = False) -> FunctionInfo:
        source = None
        if with_source:
            package = (self.functions_dir / metadata["name"] / metadata["package"]).read_bytes()
            source = read_source(package)
        return FunctionInfo(
            name=metadata["name"],
            project=metadata.get("project"),
            status=STATUS_ACTIVE,
            code_sha256=metadata["code_sha256"],
            tags=metadata.get("tags", {}),
            last_modified=metadata["last_modified"],
            timeout=metadata.get("timeout", DEFAULT_TIMEOUT_SECONDS),
            memory_size=metadata.get("memory_size", DEFAULT_MEMORY_MB),
            source=source,
        )

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

    def _remove_stale_versions(self, folder: Path, *, keep: str) -> None:
        # NOTE: a run that started on the previous code keeps reading its unpacked copy, so only
        # packages older than the previous one are removed.
        for kind, suffix in (("packages", ".zip"), ("code", "")):
            entries = sorted((folder / kind).glob(f"*{suffix}"), key=lambda path: path.stat().st_mtime)
            for stale in entries[:-2]:
                if stale.name != f"{keep}{suffix}" and not stale.name.startswith("."):
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)

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


def _same_deployment(metadata: dict[str, Any], spec: FunctionSpec) -> bool:
    return (
        metadata.get("code_sha256") == spec.code_sha256
        and metadata.get("tags") == spec.tags
        and metadata.get("timeout") == spec.timeout
        and metadata.get("memory_size") == spec.memory_size
    )


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _hex_digest(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


def _not_found(name: str) -> FunctionNotFoundError:
    return FunctionNotFoundError(
        f"no metric function named {name!r} is deployed; deploy one with `custom-metrics deploy`"
    )
