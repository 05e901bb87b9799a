"""Loading of the user's metric.py, its calling convention, and how its exceptions are reported.

The module is imported once per process and cached by the resolved path of its code directory. An
exception at import time is cached too: every pair of every batch then gets that error.

Calling convention for per_label, decided once from the signature of agreement():
- a third positional parameter, whatever its name: per_label goes there;
- otherwise **kwargs, or a keyword-only parameter named per_label: it goes as the keyword `per_label`;
- otherwise *args: it goes as the third positional argument;
- otherwise (two parameters only) it is not passed, and a per_label request gets no breakdown.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from .deadline import Deadline, PairTimeout
from .validation import clean_text

METRIC_FILE = "metric.py"
MODULE_NAME = "metric"
FUNCTION_NAME = "agreement"
MESSAGE_LIMIT = 1000
DEFAULT_CODE_DIR = "/var/task"


class PerLabelPassing(Enum):
    POSITIONAL = "positional"
    KEYWORD = "keyword"
    NOT_ACCEPTED = "not_accepted"


@dataclass(frozen=True)
class LoadedMetric:
    """The user's agreement() and how to call it, or the error that prevents calling it."""

    path: str
    function: Callable[..., Any] | None
    passing: PerLabelPassing
    error: dict[str, Any] | None

    def call(self, deadline: Deadline, annotation_1: Any, annotation_2: Any, per_label: bool) -> Any:
        """Call agreement() under the deadline with per_label passed by the detected convention."""
        if self.function is None:
            raise RuntimeError(f"{self.path} is not loaded; check LoadedMetric.error first")
        if self.passing is PerLabelPassing.POSITIONAL:
            return deadline.call(self.function, annotation_1, annotation_2, per_label)
        if self.passing is PerLabelPassing.KEYWORD:
            return deadline.call(self.function, annotation_1, annotation_2, per_label=per_label)
        return deadline.call(self.function, annotation_1, annotation_2)


_cache: dict[str, LoadedMetric] = {}


def default_code_dir() -> Path:
    """Return the directory Lambda unpacks the function's package into."""
    return Path(os.environ.get("LAMBDA_TASK_ROOT", DEFAULT_CODE_DIR))


def load_metric(code_dir: Path, deadline: Deadline, memory_limit_mb: int | None = None) -> LoadedMetric:
    """Return the cached metric of `code_dir`, importing metric.py under `deadline` on first use."""
    path = str((code_dir / METRIC_FILE).resolve())
    loaded = _cache.get(path)
    if loaded is None:
        loaded = _import_metric(path, deadline, memory_limit_mb)
        _cache[path] = loaded
    return loaded


def _import_metric(path: str, deadline: Deadline, memory_limit_mb: int | None) -> LoadedMetric:
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        return _failed(path, "ImportError", f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        deadline.call(spec.loader.exec_module, module)
    except PairTimeout as exc:
        sys.modules.pop(MODULE_NAME, None)
        error = describe_timeout(exc, path, deadline.timeout_seconds, f"importing {METRIC_FILE}")
        return LoadedMetric(path, None, PerLabelPassing.NOT_ACCEPTED, error)
    except BaseException as exc:  # noqa: BLE001 - any failure of user code at import time is reported per pair
        sys.modules.pop(MODULE_NAME, None)
        return LoadedMetric(path, None, PerLabelPassing.NOT_ACCEPTED, describe_exception(exc, path, memory_limit_mb))
    function = getattr(module, FUNCTION_NAME, None)
    if not callable(function):
        return _failed(
            path,
            "MetricDefinitionError",
            f"{METRIC_FILE} defines no callable {FUNCTION_NAME}(); "
            "define def agreement(annotation_1, annotation_2, per_label=False)",
        )
    return LoadedMetric(path, function, per_label_passing(function), None)


def _failed(path: str, error_type: str, message: str) -> LoadedMetric:
    error = {"type": error_type, "message": message, "line": None}
    return LoadedMetric(path, None, PerLabelPassing.NOT_ACCEPTED, error)


def per_label_passing(function: Callable[..., Any]) -> PerLabelPassing:
    """Decide how per_label reaches `function` (see the module docstring)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        # No inspectable signature (some C callables): the documented signature takes it third.
        return PerLabelPassing.POSITIONAL
    kinds = [parameter.kind for parameter in parameters]
    positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if sum(1 for kind in kinds if kind in positional_kinds) >= 3:
        return PerLabelPassing.POSITIONAL
    keyword_only_per_label = any(
        parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name == "per_label" for parameter in parameters
    )
    if keyword_only_per_label or inspect.Parameter.VAR_KEYWORD in kinds:
        return PerLabelPassing.KEYWORD
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return PerLabelPassing.POSITIONAL
    return PerLabelPassing.NOT_ACCEPTED


def metric_line(exc: BaseException, metric_path: str) -> int | None:
    """Return the line of the innermost traceback frame in metric.py, or a SyntaxError's own line."""
    line: int | None = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == metric_path:
            line = lineno
    if isinstance(exc, SyntaxError) and exc.filename == metric_path and exc.lineno is not None:
        line = exc.lineno
    return line


def _with_location(text: str, line: int | None) -> str:
    return f"{text} ({METRIC_FILE}, line {line})" if line is not None else text


def describe_exception(exc: BaseException, metric_path: str, memory_limit_mb: int | None = None) -> dict[str, Any]:
    """Return the per-pair error for an exception raised by user code.

    The line is that of the innermost frame in metric.py, so an error raised inside a library names the
    user's line that called it. A MemoryError gets a message naming `memory_limit_mb`, because its own
    text is usually empty.
    """
    line = metric_line(exc, metric_path)
    if isinstance(exc, MemoryError):
        text = describe_memory_error(memory_limit_mb)
    else:
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 - a user exception's __str__ may raise anything
            text = ""
        text = clean_text(text or "raised with no message", MESSAGE_LIMIT)
    return {"type": type(exc).__name__, "message": _with_location(text, line), "line": line}


def describe_memory_error(memory_limit_mb: int | None) -> str:
    """Return the message for a MemoryError in user code, naming the memory limit when it is known."""
    limit = f" (limit {memory_limit_mb} MiB)" if memory_limit_mb is not None else ""
    return (
        f"the metric ran out of memory{limit}; reduce its memory use on this pair "
        "or deploy it with a larger memory size"
    )


def describe_timeout(exc: BaseException | None, metric_path: str, timeout_seconds: float, what: str) -> dict[str, Any]:
    """Return the per-pair error for user code stopped at the deadline, naming the line it was running."""
    line = metric_line(exc, metric_path) if exc is not None else None
    text = (
        f"{what} was stopped at the invocation deadline (timeout {timeout_seconds:g} s); "
        "make the metric faster or deploy it with a longer timeout"
    )
    return {"type": "TimeoutError", "message": _with_location(text, line), "line": line}
