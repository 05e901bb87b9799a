"""AWS Lambda entry point of the control plane: API Gateway REST proxy events in, JSON responses out.

The routes live in `custom_metrics.api`; this module only wires Powertools and the Lambda backend.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from custom_metrics.api.app import build_resolver
from custom_metrics.backends.aws_lambda import LambdaBackend
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# The package logs through the standard library; give it the JSON format and the correlation id.
logging.getLogger("custom_metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"custom_metrics"})

# Most routes record no metric; Powertools would warn about the empty set on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# Scoring invokes metric functions from several threads, and Metrics keeps one unguarded buffer.
_metrics_lock = threading.Lock()


def record_metric(name: str, value: int) -> None:
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def build_service(settings: Settings, **backend_options: Any) -> MetricService:
    """Build the service on a Lambda backend; `backend_options` go to LambdaBackend (tests pass fakes)."""
    backend = LambdaBackend(settings, metrics=record_metric, **backend_options)
    return MetricService(backend, default_prefix=settings.prefix)


@functools.cache
def get_service() -> MetricService:
    """Build the service once per execution environment; a settings error is raised again on each request."""
    return build_service(Settings.from_environment())


# The lambda looks `get_service` up on every request, so a test can replace it on this module.
resolver = build_resolver(lambda: get_service())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(project=(event.get("pathParameters") or {}).get("project"))
    return resolver.resolve(event, context)
