"""Agreement job routes: start a large scoring run in the background, then poll it for progress and the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from custom_metrics.api.routing import new_router, request_id
from custom_metrics.api.validation import json_body
from custom_metrics.jobs import JobOptions, JobService, job_service_for
from custom_metrics.service import MetricService


def build_router(service: Callable[[], MetricService], jobs: Callable[[], JobService] | None = None) -> Router:
    router = new_router()
    job_service = jobs or (lambda: job_service_for(service()))

    @router.post("/projects/<project>/agreement-jobs")
    def create_job(project: str) -> Response[Any]:
        body = json_body(router, "agreement_job")
        options = JobOptions(
            per_label=body.get("per_label", False),
            per_control=body.get("per_control", False),
            pairs=body.get("pairs", "annotations"),
            prefix=body.get("prefix"),
        )
        status = job_service().create(project, body.get("tasks"), options, request_id(router))
        return _accepted(status)

    @router.post("/agreement-jobs/<job_id>/start")
    def start_job(job_id: str) -> Response[Any]:
        return _accepted(job_service().start(job_id))

    @router.get("/agreement-jobs/<job_id>")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_service().status(job_id)

    return router


def _accepted(status: dict[str, Any]) -> Response[Any]:
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=status,
        headers={"Location": f"/agreement-jobs/{status['job_id']}"},
    )
