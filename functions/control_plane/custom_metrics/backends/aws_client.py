"""The boundary with AWS: clients, error translation, deadlines and retries with jittered backoff.

Every AWS call of the Lambda backend runs inside `aws_errors(function, operation)`, which turns a
botocore `ClientError` into the project's exceptions once, where the client is called. Codes with
no mapping here propagate unchanged: the API returns them as platform failures (a generic 500, with
the traceback in the log).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from custom_metrics.backends.base import ThrottledError
from custom_metrics.errors import BackendError, ConflictError, FunctionNotFoundError, PayloadTooLargeError

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_logs.client import CloudWatchLogsClient

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], None]
Clock = Callable[[], float]

# Lambda's maximum function timeout is 900 s, and a synchronous Invoke keeps its connection open that long.
_INVOKE_READ_TIMEOUT_SECONDS = 905
_CONNECT_TIMEOUT_SECONDS = 10

# Codes that mean "slow down" or "AWS failed on its side": retrying later can succeed.
_RETRYABLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "ServiceException",
        "ResourceNotReadyException",
        "EC2ThrottledException",
        "EC2UnexpectedException",
        "ServiceUnavailableException",
    }
)
_ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"})


class LambdaParameterError(BackendError):
    """Lambda rejected a parameter (InvalidParameterValueException), for example a role it cannot assume yet."""


def make_lambda_client(region: str, max_concurrency: int) -> LambdaClient:
    """Build a Lambda client whose only retries are the backend's own, with one connection per worker."""
    config = Config(
        region_name=region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=_INVOKE_READ_TIMEOUT_SECONDS,
        connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        max_pool_connections=max(10, max_concurrency),
    )
    return boto3.client("lambda", config=config)


def make_logs_client(region: str) -> CloudWatchLogsClient:
    return boto3.client("logs", config=Config(region_name=region, connect_timeout=_CONNECT_TIMEOUT_SECONDS))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def _http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def translate_client_error(error: ClientError, function: str, operation: str) -> Exception:
    """Map one AWS error on `function` to the project's exception; return `error` itself when unmapped."""
    code = error_code(error)
    aws_message = _error_message(error)
    if code == "ResourceNotFoundException":
        return FunctionNotFoundError(
            f"no metric function named {function!r} is deployed; deploy one with "
            "`custom-metrics deploy` or PUT /projects/{project}/metric"
        )
    if code == "ResourceConflictException":
        return ConflictError(
            f"function {function!r} is busy with another change, so {operation} failed ({aws_message}); "
            "retry in a few seconds"
        )
    if code in _RETRYABLE_CODES or _http_status(error) >= 500:
        return ThrottledError(f"{operation} on {function!r} was throttled or failed inside AWS ({code}); retry later")
    if code == "InvalidParameterValueException":
        return LambdaParameterError(
            f"Lambda rejected {operation} for {function!r}: {aws_message}. "
            "Check the stack settings (execution role, runtime layer, runtime) and the timeout and memory size"
        )
    if code == "RequestTooLargeException":
        return PayloadTooLargeError(
            f"{operation} on {function!r} sent a request over Lambda's size limit ({aws_message}); send less data"
        )
    if code in _ACCESS_DENIED_CODES:
        return BackendError(
            f"the control plane is not allowed to call {operation} on {function!r} ({code}); "
            "check the policy of its role in the stack"
        )
    if code == "CodeStorageExceededException":
        return BackendError(
            f"{operation} on {function!r} failed because the account's Lambda code storage is full; "
            "delete unused functions or versions"
        )
    return error


@contextlib.contextmanager
def aws_errors(function: str, operation: str) -> Iterator[None]:
    """Run one AWS call, translating its ClientError into the project's exceptions."""
    logger.debug("calling %s", operation, extra={"function": function})
    try:
        yield
    except ClientError as error:
        translated = translate_client_error(error, function, operation)
        if translated is error:
            raise
        logger.info("%s on %s failed with %s", operation, function, error_code(error), extra={"function": function})
        raise translated from error


@dataclass
class Deadline:
    """A point in time, measured on an injectable monotonic clock, after which waiting stops."""

    seconds: float
    clock: Clock = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return max(0.0, self.started + self.seconds - self.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th delay is uniform in [0, min(cap, base * 2**n)]."""

    base: float = 0.25
    cap: float = 4.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * min(self.cap, self.base * 2.0**attempt)


def retry_until(
    call: Callable[[], T],
    *,
    retry_on: tuple[type[Exception], ...],
    deadline: Deadline,
    sleep: Sleep,
    backoff: Backoff = Backoff(),
    rng: Callable[[], float] = random.random,
    description: str,
) -> T:
    """Call `call` until it returns, retrying `retry_on` errors with backoff; re-raise the last one at the deadline."""
    attempt = 0
    while True:
        try:
            return call()
        except retry_on as error:
            delay = backoff.delay(attempt, rng)
            if deadline.remaining() <= delay:
                logger.warning("giving up on %s after %d attempts: %s", description, attempt + 1, type(error).__name__)
                raise
            logger.info("retrying %s in %.2f s after %s", description, delay, type(error).__name__)
            sleep(delay)
            attempt += 1
