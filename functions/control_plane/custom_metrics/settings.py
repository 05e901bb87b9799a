"""Settings of the Lambda backend, read from the environment.

The role and region variable names are the ones Label Studio Enterprise deployments already set,
so a control plane can run beside such a deployment without new configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from custom_metrics.backends.base import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS
from custom_metrics.errors import ConfigurationError

ROLE_VARIABLE = "LS_LAMBDA_ROLE_CUSTOM_METRICS"
REGION_VARIABLE = "LS_LAMBDA_REGION_CUSTOM_METRICS"
LAYER_VARIABLE = "CUSTOM_METRICS_RUNTIME_LAYER_ARN"
PREFIX_VARIABLE = "CUSTOM_METRICS_PREFIX"
RUNTIME_VARIABLE = "CUSTOM_METRICS_RUNTIME"
TIMEOUT_VARIABLE = "CUSTOM_METRICS_TIMEOUT"
MEMORY_VARIABLE = "CUSTOM_METRICS_MEMORY_SIZE"
CONCURRENCY_VARIABLE = "CUSTOM_METRICS_MAX_CONCURRENCY"
DEPLOY_DEADLINE_VARIABLE = "CUSTOM_METRICS_DEPLOY_DEADLINE"
LOGS_DEADLINE_VARIABLE = "CUSTOM_METRICS_LOGS_DEADLINE"

# The runtime layer is built for Python 3.11 (its compiled wheels, such as rapidfuzz, are cp311),
# so the metric functions default to the same runtime.
DEFAULT_RUNTIME = "python3.11"
DEFAULT_MAX_CONCURRENCY = 16
# API Gateway ends a request after 29 seconds, so one deploy or logs request must finish sooner.
DEFAULT_DEPLOY_DEADLINE_SECONDS = 25.0
DEFAULT_LOGS_DEADLINE_SECONDS = 20.0

# Lambda's own limits on function configuration.
MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS = 1, 900
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10240


@dataclass(frozen=True)
class Settings:
    """Configuration of the Lambda backend: where metric functions run and how long to wait for AWS."""

    role_arn: str
    region: str
    layer_arn: str
    prefix: str = ""
    runtime: str = DEFAULT_RUNTIME
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    memory_size: int = DEFAULT_MEMORY_MB
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    deploy_deadline_seconds: float = DEFAULT_DEPLOY_DEADLINE_SECONDS
    logs_deadline_seconds: float = DEFAULT_LOGS_DEADLINE_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; raise ConfigurationError naming the first missing or invalid variable."""
        env = os.environ if environ is None else environ
        timeout = _int_setting(env, TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)
        memory_size = _int_setting(env, MEMORY_VARIABLE, DEFAULT_MEMORY_MB, MIN_MEMORY_MB, MAX_MEMORY_MB)
        return cls(
            role_arn=_required(env, ROLE_VARIABLE, "the ARN of the execution role for metric functions"),
            region=_required(env, REGION_VARIABLE, "the AWS region where metric functions run"),
            layer_arn=_required(env, LAYER_VARIABLE, "the ARN of the custom-metrics runtime layer version"),
            prefix=env.get(PREFIX_VARIABLE, "").strip(),
            runtime=env.get(RUNTIME_VARIABLE, "").strip() or DEFAULT_RUNTIME,
            timeout=timeout,
            memory_size=memory_size,
            max_concurrency=_int_setting(env, CONCURRENCY_VARIABLE, DEFAULT_MAX_CONCURRENCY, 1, 1000),
            deploy_deadline_seconds=_seconds_setting(env, DEPLOY_DEADLINE_VARIABLE, DEFAULT_DEPLOY_DEADLINE_SECONDS),
            logs_deadline_seconds=_seconds_setting(env, LOGS_DEADLINE_VARIABLE, DEFAULT_LOGS_DEADLINE_SECONDS),
        )


def _required(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"setting {name} is missing; set it to {meaning} (the SAM stack sets it on the control-plane function)"
        )
    return value


def _int_setting(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"setting {name}={raw!r} is not an integer; set a whole number") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"setting {name}={value} is out of range; set a value from {minimum} to {maximum}")
    return value


def _seconds_setting(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"setting {name}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 900:
        raise ConfigurationError(f"setting {name}={value} is out of range; set seconds above 0 and at most 900")
    return value
