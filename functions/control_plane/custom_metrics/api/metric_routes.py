"""Routes of a project's metric: deploy, describe, delete, list, check, logs, versions, rollback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from custom_metrics.api.routing import new_router
from custom_metrics.api.validation import json_body, query_float, query_int
from custom_metrics.service import MetricService

DEFAULT_LOG_WINDOW_SECONDS = 3600
MAX_LOG_ROWS = 10000


def build_router(service: Callable[[], MetricService]) -> Router:
    router = new_router()

    @router.put("/projects/<project>/metric")
    def put_metric(project: str) -> Response[Any]:
        body = json_body(router, "put_metric")
        result = service().put_metric(
            project,
            code=body.get("code"),
            builtin=body.get("builtin"),
            options=body.get("options"),
            tags=body.get("tags"),
            prefix=body.get("prefix"),
            timeout=body.get("timeout"),
            memory_size=body.get("memory_size"),
            force=body.get("force", False),
            trial_tasks=body.get("trial_tasks"),
        )
        status = 201 if result["result"] == "created" else 200
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=result)

    @router.get("/projects/<project>/metric")
    def get_metric(project: str) -> dict[str, Any]:
        return service().get_metric(project, router.current_event.get_query_string_value("prefix"))

    @router.delete("/projects/<project>/metric")
    def delete_metric(project: str) -> dict[str, Any]:
        return service().delete_metric(project, router.current_event.get_query_string_value("prefix"))

    @router.get("/projects/<project>/metric/versions")
    def metric_versions(project: str) -> dict[str, Any]:
        return service().versions(project, router.current_event.get_query_string_value("prefix"))

    @router.post("/projects/<project>/metric/rollback")
    def rollback_metric(project: str) -> dict[str, Any]:
        body = json_body(router, "rollback")
        return service().rollback(project, body["version"], body.get("prefix"))

    @router.get("/metrics")
    def list_metrics() -> dict[str, Any]:
        return service().list_metrics()

    @router.post("/projects/<project>/metric/check")
    def check_metric(project: str) -> dict[str, Any]:
        body = json_body(router, "check_metric")
        return service().check_metric(project, body["code"], body.get("tasks"), pairs=body.get("pairs", "annotations"))

    @router.get("/projects/<project>/metric/logs")
    def metric_logs(project: str) -> dict[str, Any]:
        now = time.time()
        end = query_float(router, "end", now)
        start = query_float(router, "start", end - DEFAULT_LOG_WINDOW_SECONDS)
        limit = query_int(router, "limit", 100, low=1, high=MAX_LOG_ROWS)
        prefix = router.current_event.get_query_string_value("prefix")
        return service().logs(project, prefix, start, end, limit)

    return router
