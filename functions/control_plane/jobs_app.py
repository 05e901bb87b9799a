"""AWS Lambda entry points of the agreement-job state machine: the batch worker and the aggregation step.

The logic lives in `custom_metrics.job_steps`; this module only builds the clients from the environment.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from custom_metrics import job_steps
from custom_metrics.aws_jobs import make_s3_client
from custom_metrics.backends.aws_lambda import LambdaBackend
from custom_metrics.settings import Settings

logger = Logger()
logging.getLogger("custom_metrics")
copy_config_to_registered_loggers(source_logger=logger, include={"custom_metrics"})


@functools.cache
def get_backend() -> LambdaBackend:
    return LambdaBackend(Settings.from_environment())


@functools.cache
def get_s3() -> Any:
    return make_s3_client(Settings.from_environment().region)


@logger.inject_lambda_context(clear_state=True)
def worker_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event["BatchInput"]["job"]["job_id"])
    return job_steps.score_batch(event, get_backend(), get_s3())


@logger.inject_lambda_context(clear_state=True)
def aggregate_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event["job"]["job_id"])
    return job_steps.aggregate_job(event, get_s3())
