"""The statistics route: a Label Studio export in, chance-corrected agreement statistics out.

The statistics need no deployed metric function, so the route reads no backend state.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from custom_metrics import naming
from custom_metrics.api.routing import new_router
from custom_metrics.api.validation import json_body
from custom_metrics.statistics import project_statistics

logger = logging.getLogger(__name__)


def build_router() -> Router:
    router = new_router()

    @router.post("/projects/<project>/statistics")
    def statistics(project: str) -> dict[str, Any]:
        naming.function_name(project)  # The same project id rules as the other routes.
        body = json_body(router, "statistics")
        report = project_statistics(body["tasks"], include_predictions=body.get("include_predictions", False))
        # The app is an APIGatewayRestResolver, so every event is a REST API proxy event.
        event = cast(APIGatewayProxyEvent, router.current_event)
        logger.info(
            "statistics computed",
            extra={
                "request_id": event.request_context.request_id,
                "project": project,
                "controls": len(report["controls"]),
            },
        )
        return {"project": project, **report}

    return router
