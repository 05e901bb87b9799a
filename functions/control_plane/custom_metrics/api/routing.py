"""Typed helpers around powertools' Router, whose constructor and event property are loosely typed."""

from __future__ import annotations

from typing import cast

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent


def new_router() -> Router:
    return Router()  # type: ignore[no-untyped-call]  # powertools leaves Router.__init__ unannotated


def request_id(router: Router) -> str:
    """Return API Gateway's request id of the current event (the local server sets one too)."""
    return cast(APIGatewayProxyEvent, router.current_event).request_context.request_id
