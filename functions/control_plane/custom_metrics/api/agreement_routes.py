"""The scoring route: a Label Studio export in, the agreement JSON out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from custom_metrics.api.routing import new_router, request_id
from custom_metrics.api.validation import json_body
from custom_metrics.service import MetricService


def build_router(service: Callable[[], MetricService]) -> Router:
    router = new_router()

    @router.post("/projects/<project>/agreement")
    def score(project: str) -> dict[str, Any]:
        body = json_body(router, "agreement")
        return service().score(
            project,
            body["tasks"],
            per_label=body.get("per_label", False),
            per_control=body.get("per_control", False),
            pairs=body.get("pairs", "annotations"),
            prefix=body.get("prefix"),
            request_id=request_id(router),
        )

    return router
