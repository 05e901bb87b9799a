"""The resolver that serves every route, on API Gateway and on the local server alike.

`build_resolver` takes a zero-argument factory for the service, so the Lambda handler can build
a Lambda-backed service from its settings on first use and the local server can pass its own.
ServiceError subclasses become JSON `{"message": ...}` with their status; anything else is a
platform failure, which is logged with its traceback and returned as a generic 500 naming the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from custom_metrics.api import (
    agreement_routes,
    job_routes,
    metric_routes,
    sdk_routes,
    statistics_routes,
    webhook_routes,
)
from custom_metrics.errors import ServiceError
from custom_metrics.service import MetricService

logger = logging.getLogger(__name__)


def build_resolver(service: Callable[[], MetricService]) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()
    app.include_router(metric_routes.build_router(service))
    app.include_router(agreement_routes.build_router(service))
    app.include_router(job_routes.build_router(service))
    app.include_router(statistics_routes.build_router())
    app.include_router(webhook_routes.build_router(service))
    app.include_router(sdk_routes.build_router(service))

    @app.exception_handler(ServiceError)  # type: ignore[untyped-decorator]  # powertools leaves it unannotated
    def handle_service_error(error: ServiceError) -> Response[Any]:
        logger.info(
            "request rejected",
            extra={"status": error.status_code, "error": type(error).__name__, "path": app.current_event.path},
        )
        return Response(
            status_code=error.status_code, content_type=content_types.APPLICATION_JSON, body=error.to_body()
        )

    @app.not_found
    def handle_not_found(error: NotFoundError) -> Response[Any]:
        message = (
            f"no route for {app.current_event.http_method} {app.current_event.path}; see the API section of the README"
        )
        return Response(status_code=404, content_type=content_types.APPLICATION_JSON, body={"message": message})

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def handle_platform_error(error: Exception) -> Response[Any]:
        request_id = app.current_event.request_context.request_id
        logger.exception("request failed", extra={"request_id": request_id, "path": app.current_event.path})
        message = f"internal error; the service logs have the details under request id {request_id}"
        return Response(status_code=500, content_type=content_types.APPLICATION_JSON, body={"message": message})

    return app
