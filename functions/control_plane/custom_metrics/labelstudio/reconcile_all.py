"""Reconcile every connected Label Studio project, as the stack's schedule does.

Projects go stalest first (by the time of their last reconcile), so when one run ends before it
reaches every project, the next run starts with the ones it left out. A project that fails is
logged and reported, and the run goes on with the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from custom_metrics.errors import ServiceError
from custom_metrics.labelstudio.store import ConnectionStorage
from custom_metrics.labelstudio.sync import ProjectSync, Scorer

logger = logging.getLogger(__name__)

# A project is started only with this much time left in the invocation, in milliseconds.
# NOTE: one project's reconcile has no time bound of its own. A very large project can still run
# past the function's timeout, and the next run then starts with it again.
DEFAULT_RESERVE_MS = 120_000


@dataclass
class ReconcileRun:
    """Outcome of one run: a report per reconciled project, the failures and the projects left for later."""

    reconciled: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reconciled": self.reconciled, "failed": self.failed, "skipped": self.skipped}


def reconcile_all(
    store: ConnectionStorage,
    service: Scorer,
    *,
    projects: Iterable[str] | None = None,
    remaining_ms: Callable[[], int] | None = None,
    reserve_ms: int = DEFAULT_RESERVE_MS,
) -> ReconcileRun:
    """Reconcile `projects` (default: every connected project) while time remains."""
    run = ReconcileRun()
    for project in stalest_first(store, list(projects) if projects is not None else store.projects()):
        if remaining_ms is not None and remaining_ms() < reserve_ms:
            run.skipped.append(project)
            continue
        try:
            report = ProjectSync(store, store.load(project), service).reconcile()
        except ServiceError as error:
            logger.error("reconcile failed: %s", error.message, extra={"project": project})
            run.failed[project] = error.message
            continue
        except Exception:
            # One project's failure must not stop the others; the traceback names the cause.
            logger.exception("reconcile failed", extra={"project": project})
            run.failed[project] = "internal error; the function's log has the traceback"
            continue
        run.reconciled[project] = report.to_dict()
    if run.skipped:
        logger.warning("time ran out; projects left for the next run", extra={"projects": run.skipped})
    return run


def stalest_first(store: ConnectionStorage, projects: list[str]) -> list[str]:
    """Order projects by the time of their last reconcile, never-reconciled ones first."""
    last = {project: str(store.sync_state(project).get("last_reconciled_at", "")) for project in projects}
    return sorted(projects, key=lambda project: (last[project], project))
