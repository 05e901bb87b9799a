"""Trial runs: a metric that is not deployed yet, run on sample pairs in the sandbox.

The trial writes the package's `metric.py` to a temporary folder and runs it through the same
worker pool and runtime as a deployed local function, so its results match a later deploy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from custom_metrics.backends.base import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS
from custom_metrics.backends.local import MAX_PAYLOAD_BYTES
from custom_metrics.packaging import METRIC_MODULE_FILE
from custom_metrics.sandbox import WorkerPool


class PackageRunner:
    """A backend-shaped runner for one unsaved source, for the orchestrator to drive."""

    kind = "trial"

    def __init__(
        self,
        pool: WorkerPool,
        code_dir: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        memory_size: int = DEFAULT_MEMORY_MB,
        concurrency: int = 1,
    ) -> None:
        self._pool = pool
        self._code_dir = code_dir
        self._timeout = timeout
        self._memory_size = memory_size
        self.max_concurrency = concurrency
        self.max_batch_pairs = 500
        self.max_batch_bytes = MAX_PAYLOAD_BYTES

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._pool.invoke(self._code_dir, payload, self._timeout, self._memory_size)


def staged_source(source: str) -> tempfile.TemporaryDirectory[str]:
    """Write `source` as metric.py into a new temporary folder; the caller removes it."""
    folder = tempfile.TemporaryDirectory(prefix="custom-metrics-trial-")
    path = Path(folder.name) / METRIC_MODULE_FILE
    path.write_text(source, "utf-8")
    path.chmod(0o644)
    return folder
