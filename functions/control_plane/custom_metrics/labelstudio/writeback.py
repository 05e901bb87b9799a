"""Write a task's score into `data.<key>` and its provenance into `meta.<key>`, keeping every other field.

Label Studio's `PATCH /api/tasks/{id}` replaces `data` (and `meta`) wholesale and has no
precondition header, so the write is a read-modify-write with a conflict check. The task is read
again just before the PATCH. If its `updated_at`, `data` or `meta` changed since the read that the
score was applied to, the score is applied to the new state and checked again, a bounded number of times.

NOTE: a change made by someone else between that second read and the PATCH (a window of one
request) is still overwritten; Label Studio offers no compare-and-swap to close it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from custom_metrics.errors import ServiceError
from custom_metrics.labelstudio.client import LabelStudioClient, TaskSnapshot

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_DELAY_SECONDS = 0.2


class WriteConflictError(ServiceError):
    """The task kept changing between read and write, so the score was not written."""

    status_code = 409


class WriteOutcome(Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class TaskScore:
    """A task's agreement and what it was computed from, as stored in `meta.<key>`."""

    task: int
    score: float | None
    pairs: int
    errors: int
    annotators: list[str]
    function: str
    code_sha256: str
    pair_mode: str
    fingerprint: str
    scored_at: str = field(default="")

    def provenance(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "method": f"mean of pairwise scores of {self.function} over {self.pair_mode} pairs",
            "function": self.function,
            "code_sha256": self.code_sha256,
            "pair_mode": self.pair_mode,
            "pairs": self.pairs,
            "errors": self.errors,
            "annotators": self.annotators,
            "scored_at": self.scored_at,
            "fingerprint": self.fingerprint,
        }


def apply_score(
    data: dict[str, Any], meta: dict[str, Any], key: str, score: TaskScore
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return copies of `data` and `meta` with the score set; a null score removes `data.<key>`."""
    new_data = dict(data)
    if score.score is None:
        new_data.pop(key, None)
    else:
        new_data[key] = score.score
    new_meta = {**meta, key: score.provenance()}
    return new_data, new_meta


def is_current(snapshot: TaskSnapshot, key: str, score: TaskScore) -> bool:
    """Tell whether the task already shows this score, from the same annotations and metric code."""
    stored = snapshot.meta.get(key)
    if not isinstance(stored, dict):
        return False
    return (
        snapshot.data.get(key) == score.score
        and stored.get("fingerprint") == score.fingerprint
        and stored.get("code_sha256") == score.code_sha256
        and stored.get("pairs") == score.pairs
        and stored.get("errors") == score.errors
    )


def write_score(
    client: LabelStudioClient,
    key: str,
    score: TaskScore,
    *,
    snapshot: TaskSnapshot | None = None,
    attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteOutcome:
    """Write `score` into the task by read-modify-write; raise WriteConflictError after `attempts` conflicts.

    `snapshot` is the task as read before scoring began; without it the task is read first.
    """
    base = snapshot or client.get_task(score.task)
    for attempt in range(1, attempts + 1):
        if is_current(base, key, score):
            return WriteOutcome.UNCHANGED
        data, meta = apply_score(base.data, base.meta, key, score)
        current = client.get_task(score.task)
        if _unchanged(base, current):
            client.update_task(score.task, data, meta)
            logger.info("score written", extra={"task": score.task, "key": key, "attempt": attempt})
            return WriteOutcome.WRITTEN
        logger.info("task changed before the write; retrying", extra={"task": score.task, "attempt": attempt})
        base = current
        if attempt < attempts:
            sleep(RETRY_DELAY_SECONDS * attempt)
    raise WriteConflictError(
        f"task {score.task} changed during each of {attempts} write attempts, so its score was not written; "
        "run `custom-metrics reconcile` when the edits settle"
    )


def _unchanged(before: TaskSnapshot, after: TaskSnapshot) -> bool:
    return before.updated_at == after.updated_at and before.data == after.data and before.meta == after.meta
