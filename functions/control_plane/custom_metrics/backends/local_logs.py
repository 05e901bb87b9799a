"""Log files of the local backend's functions: what their workers print, one JSON line per output line.

Each line a worker writes (user prints and the runtime's batch log) is appended to
`<functions_dir>/<name>/logs/<YYYY-MM-DD>.jsonl`, the date in UTC, as
`{"timestamp": unix seconds, "request_id": str | null, "message": str}`. The request id is that of the
batch that was running. A day's file stops growing at MAX_DAY_BYTES: one line saying so is written, and
later lines of that day are dropped (counted in the control plane's log, not stored). Files are never
rotated or removed except with their function.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from custom_metrics.backends.base import LogRow

logger = logging.getLogger(__name__)
# Worker lines are also logged here at INFO, which `custom-metrics -v` and the local server print.
output_logger = logging.getLogger("custom_metrics.worker_output")

LOGS_DIR = "logs"
MAX_DAY_BYTES = 10 * 1024 * 1024


class FunctionLogWriter:
    """Appends worker output lines to the day's log file of the function whose code the worker runs.

    Lines from a code folder outside `functions_dir` (a `check` trial) are only logged, not stored.
    """

    def __init__(
        self, functions_dir: Path, *, clock: Callable[[], float] = time.time, max_day_bytes: int = MAX_DAY_BYTES
    ) -> None:
        self.functions_dir = functions_dir
        self.max_day_bytes = max_day_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._full_days: dict[Path, int] = {}

    def write(self, code_dir: Path, line: str, request_id: str | None) -> None:
        """Store one output line; called on a worker's drain thread (see `custom_metrics.sandbox`)."""
        name = self._function_of(code_dir)
        output_logger.info("%s [%s] %s", name or "check", request_id or "-", line)
        if name is None:
            return
        timestamp = self._clock()
        day = datetime.fromtimestamp(timestamp, tz=UTC).date().isoformat()
        record = json.dumps({"timestamp": timestamp, "request_id": request_id, "message": line}) + "\n"
        try:
            self._append(self.functions_dir / name, day, record, timestamp)
        except OSError as error:
            # The function may have been deleted while its worker ran; losing a log line must not stop scoring.
            logger.debug("could not write a log line: %s", type(error).__name__, extra={"function": name})

    def _function_of(self, code_dir: Path) -> str | None:
        # A function's code folder is <functions_dir>/<name>/code/<hex>.
        try:
            relative = code_dir.resolve().relative_to(self.functions_dir.resolve())
        except ValueError:
            return None
        return relative.parts[0] if len(relative.parts) == 3 and relative.parts[1] == "code" else None

    def _append(self, folder: Path, day: str, record: str, timestamp: float) -> None:
        if not folder.is_dir():
            return  # deleted: do not create its folder again
        path = folder / LOGS_DIR / f"{day}.jsonl"
        with self._lock:
            dropped = self._full_days.get(path)
            if dropped is not None:
                self._full_days[path] = dropped + 1
                return
            path.parent.mkdir(exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            if size >= self.max_day_bytes:
                note = f"log file reached {self.max_day_bytes} bytes; later lines of {day} (UTC) are dropped"
                line = json.dumps({"timestamp": timestamp, "request_id": None, "message": note}) + "\n"
                self._full_days[path] = 1
                record = line
                logger.warning("%s: %s", folder.name, note)
            with open(path, "a", encoding="utf-8") as stream:
                stream.write(record)


def read_logs(folder: Path, start: float, end: float, limit: int) -> list[LogRow]:
    """Return the last `limit` lines logged from `start` to `end` (Unix seconds), newest last."""
    rows: deque[LogRow] = deque(maxlen=limit)
    for path in _day_files(folder / LOGS_DIR, start, end):
        try:
            lines = path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            continue
        for text in lines:
            row = _parse(text, start, end)
            if row is not None:
                rows.append(row)
    return list(rows)


def _day_files(logs_dir: Path, start: float, end: float) -> list[Path]:
    first = datetime.fromtimestamp(max(start, 0.0), tz=UTC).date()
    last = datetime.fromtimestamp(max(end, 0.0), tz=UTC).date()
    files = []
    day = first
    while day <= last:
        path = logs_dir / f"{day.isoformat()}.jsonl"
        if path.is_file():
            files.append(path)
        day += timedelta(days=1)
    return files


def _parse(text: str, start: float, end: float) -> LogRow | None:
    try:
        record = json.loads(text)
        timestamp = float(record["timestamp"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash mid-write
    if not start <= timestamp <= end:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")
    return LogRow(timestamp=moment, message=str(record.get("message", "")), request_id=record.get("request_id"))
