"""The Label Studio webhook receiver: `POST /webhooks/label-studio?project=<metric project>`.

The request must carry the connection's shared secret in the `X-Custom-Metrics-Secret` header,
which is compared in constant time. A missing or wrong secret, or an unknown project, gets 401 and
changes nothing. A valid event gets a 202 response at once and its work runs afterwards on the dispatcher.
The payload is never logged, because it carries the project's invite token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from custom_metrics.api import routing
from custom_metrics.api.validation import json_body
from custom_metrics.backends.local import default_state_dir
from custom_metrics.errors import InvalidInputError
from custom_metrics.labelstudio.dispatch import Dispatcher, default_dispatcher
from custom_metrics.labelstudio.events import EventPlan, plan_event
from custom_metrics.labelstudio.provision import SECRET_HEADER
from custom_metrics.labelstudio.store import ConnectionStorage, ConnectionStore
from custom_metrics.labelstudio.stores import open_store
from custom_metrics.labelstudio.sync import ProjectSync
from custom_metrics.service import MetricService

logger = logging.getLogger(__name__)

UNAUTHORIZED_MESSAGE = (
    f"missing or invalid webhook secret; Label Studio must send the {SECRET_HEADER} header that "
    "`custom-metrics connect` registered, to ?project=<the connected project>"
)


def build_router(
    service: Callable[[], MetricService],
    *,
    dispatcher: Dispatcher | None = None,
    state_dir: Path | None = None,
) -> Router:
    router = routing.new_router()

    @router.post("/webhooks/label-studio")
    def receive() -> Response[Any]:
        project = router.current_event.get_query_string_value("project") or ""
        store = ConnectionStore(state_dir) if state_dir is not None else _default_store(service)
        # Powertools 3 looks headers up without regard to case.
        presented = router.current_event.headers.get(SECRET_HEADER) or ""
        if not _authorized(store, project, presented):
            logger.warning("webhook rejected: missing or invalid secret", extra={"project": project[:64]})
            return _json(401, {"message": UNAUTHORIZED_MESSAGE})

        plan = plan_event(json_body(router, "webhook_label_studio"))
        request_id = routing.request_id(router)
        logger.info(
            "webhook received",
            extra={
                "project": project,
                "action": plan.action,
                "tasks": sorted(plan.rescore_tasks),
                "request_id": request_id,
            },
        )
        if plan.empty:
            return _json(200, {"action": plan.action, "queued": False})
        queued = (dispatcher or default_dispatcher()).submit(
            lambda: _run_plan(store, project, plan, service), name=f"{project}:{plan.action}:{request_id}"
        )
        return _json(202, {"action": plan.action, "queued": queued})

    return router


def _authorized(store: ConnectionStorage, project: str, presented: str) -> bool:
    try:
        expected = store.webhook_secret(project) if store.exists(project) else None
    except InvalidInputError:
        return False  # Not a valid project name, so no connection can exist under it.
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _run_plan(store: ConnectionStorage, project: str, plan: EventPlan, service: Callable[[], MetricService]) -> None:
    connection = store.load(project)
    report = ProjectSync(store, connection, service()).handle(plan)
    logger.info("webhook handled", extra={"project": project, "action": plan.action, **report.to_dict()})


def _default_store(service: Callable[[], MetricService]) -> ConnectionStorage:
    # The stack's variables select S3 and SSM; otherwise the local backend keeps connections beside its functions.
    backend_dir = getattr(service().backend, "state_dir", None)
    return open_store(Path(backend_dir) if backend_dir is not None else default_state_dir())


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)
