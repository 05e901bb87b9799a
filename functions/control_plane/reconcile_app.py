"""AWS Lambda entry point of the scheduled reconcile of every connected Label Studio project.

The EventBridge rule in template.yaml invokes `lambda_handler` at the stack's ReconcileRateMinutes.
An event with `"projects": ["name", ...]` reconciles only those projects, for a manual run:

    aws lambda invoke --function-name <ReconcileFunctionName> --payload '{"projects": ["sentiment"]}' out.json

The logic lives in `custom_metrics.labelstudio.reconcile_all`; this module only builds the store and
the service from the environment.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from custom_metrics.backends.aws_lambda import LambdaBackend
from custom_metrics.errors import ConfigurationError, InvalidInputError
from custom_metrics.labelstudio.aws_store import BUCKET_VARIABLE, AwsConnectionStore, AwsStoreSettings
from custom_metrics.labelstudio.reconcile_all import reconcile_all
from custom_metrics.labelstudio.store import ConnectionStorage
from custom_metrics.service import MetricService
from custom_metrics.settings import Settings

logger = Logger()
logging.getLogger("custom_metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"custom_metrics"})


@functools.cache
def get_service() -> MetricService:
    settings = Settings.from_environment()
    return MetricService(LambdaBackend(settings), default_prefix=settings.prefix)


@functools.cache
def get_store() -> ConnectionStorage:
    settings = AwsStoreSettings.from_environment()
    if settings is None:
        raise ConfigurationError(
            f"setting {BUCKET_VARIABLE} is missing; set it to the bucket of the Label Studio connections "
            "(the SAM stack sets it on the reconcile function)"
        )
    return AwsConnectionStore(settings)


def requested_projects(event: dict[str, Any]) -> list[str] | None:
    """Return the event's `projects` list, or None (every project) for a scheduled event."""
    projects = event.get("projects")
    if projects is None:
        return None
    if not isinstance(projects, list) or not all(isinstance(name, str) for name in projects):
        raise InvalidInputError(f"`projects` must be a list of project names, not {type(projects).__name__}")
    return projects


# The functions are looked up on each call, so a test can replace get_service and get_store on this module.
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = reconcile_all(
        get_store(),
        get_service(),
        projects=requested_projects(event),
        remaining_ms=context.get_remaining_time_in_millis,
    )
    logger.info(
        "reconcile run finished",
        extra={"reconciled": len(run.reconciled), "failed": sorted(run.failed), "skipped": run.skipped},
    )
    return run.to_dict()
