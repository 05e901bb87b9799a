"""The Lambda backend: metric functions are AWS Lambda functions named `custom-metric-*`.

Each function runs the package's `metric.py` through the handler in the custom-metrics runtime
layer. Deploys create or update the function and wait for it with Lambda's waiters. Every wait and
retry has a deadline, and every AWS call goes through `aws_errors`, which maps AWS error codes to
the project's exceptions.

A deploy that changes code or configuration takes two Lambda updates, so it tags the function with
the time it started and removes the tag when the last step succeeds. While that tag is present,
`get` reports the function as Pending, or as Failed once the deploy is older than its deadline, so
a function left with new code and old configuration is never reported Active.

Versions: a deploy that changes code or configuration updates `$LATEST` and publishes a version
(CreateFunction publishes version 1). Invocations name the alias `live`, which `set_live` creates or
moves after the service's trial of the new version. `get` and `list` describe the version `live`
points at. The trial outcome of each version is kept in the function tag `TRIALS_TAG`.
"""

from __future__ import annotations

import builtins
import logging
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from botocore.exceptions import ClientError, WaiterError

from custom_metrics.backends.aws_client import (
    Deadline,
    LambdaParameterError,
    Sleep,
    aws_errors,
    make_lambda_client,
    make_logs_client,
    retry_until,
    translate_client_error,
)
from custom_metrics.backends.aws_logs import query_function_logs
from custom_metrics.backends.aws_status import (
    DEPLOY_MARKER_TAG,
    TRIALS_TAG,
    configuration_changes,
    diff_tags,
    format_trials,
    function_status,
    normalize_timestamp,
    parse_trials,
)
from custom_metrics.backends.base import (
    LIVE_ALIAS,
    STATUS_FAILED,
    STATUS_PENDING,
    BatchFailedError,
    DeployOutcome,
    DeployResult,
    FunctionInfo,
    FunctionSpec,
    LogRow,
    ThrottledError,
    VersionInfo,
    ensure_same_project,
)
from custom_metrics.errors import (
    BackendError,
    ConflictError,
    DeploymentFailedError,
    FunctionNotFoundError,
    InvalidInputError,
    PayloadTooLargeError,
)
from custom_metrics.naming import FUNCTION_NAME_BASE, MANAGED_TAG_PROJECT
from custom_metrics.packaging import read_source
from custom_metrics.settings import (
    MAX_MEMORY_MB,
    MAX_TIMEOUT_SECONDS,
    MIN_MEMORY_MB,
    MIN_TIMEOUT_SECONDS,
    Settings,
)

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_lambda.type_defs import GetFunctionResponseTypeDef
    from mypy_boto3_logs.client import CloudWatchLogsClient

logger = logging.getLogger(__name__)

RUNTIME_HANDLER = "custom_metrics_runtime.handler.lambda_handler"
FUNCTION_NAME_PREFIX = f"{FUNCTION_NAME_BASE}-"
# Lambda's limit for the request and for the response of a synchronous invocation.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Just under the 5,242 pairs whose estimated responses (1,200 bytes each, the orchestrator's
# RESPONSE_BYTES_PER_PAIR) fit in MAX_PAYLOAD_BYTES.
MAX_BATCH_PAIRS = 5000
# The layer is built on x86_64 (its compiled wheels are manylinux x86_64).
ARCHITECTURE: Literal["x86_64"] = "x86_64"
# A deploy marker older than the deploy deadline plus this margin belongs to a deploy that died.
_MARKER_GRACE_SECONDS = 60.0
_FETCH_TIMEOUT_SECONDS = 10.0

PackageFetcher = Callable[[str], bytes]
# Receives operational counts (metric name, value), for example CloudWatch EMF metrics in the handler.
MetricsRecorder = Callable[[str, int], None]
WaiterName = Literal["function_active_v2", "function_updated_v2"]


def fetch_package(url: str) -> bytes:
    """Download a function's package from the presigned HTTPS URL in GetFunction's `Code.Location`."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise ValueError(f"package location {url[:60]!r} is not an HTTPS URL")
    with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 - scheme checked above
        body: bytes = response.read()
    return body


class LambdaBackend:
    """Stores metric functions as Lambda functions and invokes them synchronously."""

    kind = "lambda"
    # Each invocation has a fixed cost, so batches are filled to the byte and pair limits rather than
    # split over max_concurrency. NOTE: a small job then runs in few invocations, which is slower than
    # spreading it when the metric spends seconds of CPU per batch.
    spread_small_jobs = False

    def __init__(
        self,
        settings: Settings,
        *,
        lambda_client: LambdaClient | None = None,
        logs_client: CloudWatchLogsClient | None = None,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        waiter_delay: int = 1,
        package_fetcher: PackageFetcher = fetch_package,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.max_concurrency = settings.max_concurrency
        self.max_batch_pairs = MAX_BATCH_PAIRS
        self.max_batch_bytes = MAX_PAYLOAD_BYTES
        self._lambda = lambda_client or make_lambda_client(settings.region, settings.max_concurrency)
        self._logs_client = logs_client
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._waiter_delay = waiter_delay
        self._fetch_package = package_fetcher
        self._metrics = metrics

    # Storage -------------------------------------------------------------------------------

    def deploy(self, spec: FunctionSpec) -> DeployResult:
        _check_limits(spec)
        deadline = Deadline(self.settings.deploy_deadline_seconds, self._clock)
        try:
            existing = self._get_function(spec.name)
        except FunctionNotFoundError:
            return self._create(spec, deadline)
        ensure_same_project(spec.name, existing.get("Tags", {}).get(MANAGED_TAG_PROJECT), spec.project)
        return self._update(spec, existing, self._get_live(spec.name), deadline)

    def get(self, name: str) -> FunctionInfo:
        response = self._get_function(name)
        live = self._get_live(name)
        return self._info(response, live, source=self._read_source(name, live or response))

    def list(self) -> builtins.list[FunctionInfo]:
        # NOTE: ListFunctions returns neither State nor tags, and GetFunction on the alias omits the
        # tags. So each metric function costs two GetFunction calls, and hundreds of them make this slow.
        infos = []
        for name in self._list_names():
            try:
                infos.append(self._info(self._get_function(name), self._get_live(name)))
            except FunctionNotFoundError:
                logger.info("function deleted while listing", extra={"function": name})
        return infos

    # Versions ------------------------------------------------------------------------------

    def versions(self, name: str) -> builtins.list[VersionInfo]:
        response = self._get_function(name)
        trials = parse_trials(response.get("Tags", {}).get(TRIALS_TAG))
        live = self._live_version(name)
        versions: builtins.list[VersionInfo] = []
        marker: str | None = None
        while True:
            with aws_errors(name, "ListVersionsByFunction"):
                page = (
                    self._lambda.list_versions_by_function(FunctionName=name, Marker=marker)
                    if marker
                    else self._lambda.list_versions_by_function(FunctionName=name)
                )
            for configuration in page.get("Versions", []):
                number = configuration.get("Version", "")
                if number.isdigit():
                    versions.append(
                        VersionInfo(
                            version=number,
                            code_sha256=configuration.get("CodeSha256", ""),
                            created=normalize_timestamp(configuration.get("LastModified", "")),
                            trial=trials.get(number),
                            live=number == live,
                        )
                    )
            marker = page.get("NextMarker")
            if not marker:
                return sorted(versions, key=lambda version: int(version.version))

    def set_live(self, name: str, version: str) -> FunctionInfo:
        deadline = Deadline(self.settings.deploy_deadline_seconds, self._clock)
        alias_exists = self._live_version(name) is not None

        def point_alias() -> None:
            if alias_exists:
                with aws_errors(name, "UpdateAlias"):
                    self._lambda.update_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)
            else:
                with aws_errors(name, "CreateAlias"):
                    self._lambda.create_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)

        self._retry_busy(point_alias, deadline, name, "UpdateAlias" if alias_exists else "CreateAlias")
        logger.info("live version moved", extra={"function": name, "version": version})
        return self._info(self._get_function(name), self._get_live(name))

    def record_trial(self, name: str, version: str, outcome: str) -> None:
        response = self._get_function(name)
        trials = parse_trials(response.get("Tags", {}).get(TRIALS_TAG))
        trials[version] = outcome
        deadline = Deadline(self.settings.deploy_deadline_seconds, self._clock)
        try:
            self._tag(name, response["Configuration"]["FunctionArn"], {TRIALS_TAG: format_trials(trials)}, deadline)
        except LambdaParameterError:
            # NOTE: Lambda rejects the tag when the function already has 50; the outcome is then not kept.
            logger.warning("trial outcome not recorded", extra={"function": name, "version": version})

    def save_trial_tasks(self, name: str, sample: dict[str, Any]) -> None:
        # NOTE: the stack has no store for recently scored tasks yet, so on Lambda the trial uses the
        # deploy request's tasks or the built-in pairs only.
        return None

    def trial_tasks(self, name: str) -> dict[str, Any] | None:
        return None

    def delete(self, name: str) -> None:
        deadline = Deadline(self.settings.deploy_deadline_seconds, self._clock)

        def delete_function() -> None:
            with aws_errors(name, "DeleteFunction"):
                self._lambda.delete_function(FunctionName=name)

        self._retry_busy(delete_function, deadline, name, "DeleteFunction")
        logger.info("function deleted", extra={"function": name})

    # Invocation ----------------------------------------------------------------------------

    def invoke(self, name: str, payload: dict[str, Any], qualifier: str = LIVE_ALIAS) -> dict[str, Any]:
        body: bytes = orjson.dumps(payload)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise BatchFailedError(
                "payload_too_large",
                f"the batch request is {len(body)} bytes, over Lambda's limit of {MAX_PAYLOAD_BYTES} bytes "
                "for a synchronous invocation",
            )
        self._record("Invocations", 1)
        try:
            with aws_errors(name, "Invoke"):
                response = self._lambda.invoke(
                    FunctionName=name, Qualifier=qualifier, InvocationType="RequestResponse", Payload=body
                )
        except ThrottledError:
            self._record("Throttles", 1)
            raise
        except ConflictError as error:
            # The function is Pending or mid-update; the orchestrator retries ThrottledError with backoff.
            self._record("Throttles", 1)
            raise ThrottledError(f"function {name!r} is not ready to run yet: {error.message}") from error
        except PayloadTooLargeError as error:
            raise BatchFailedError("payload_too_large", error.message) from error
        raw = response["Payload"].read()
        function_error = response.get("FunctionError")
        if function_error:
            self._record("BatchFailures", 1)
            raise _batch_failure(name, function_error, raw)
        result = _parse_result(name, raw)
        pair_errors = sum(1 for item in result["results"] if isinstance(item, dict) and item.get("error"))
        if pair_errors:
            self._record("PairErrors", pair_errors)
        return result

    def logs(self, name: str, start: float, end: float, limit: int) -> builtins.list[LogRow]:
        self._get_function(name)
        return query_function_logs(
            self._logs,
            name,
            start=start,
            end=end,
            limit=limit,
            deadline=Deadline(self.settings.logs_deadline_seconds, self._clock),
            sleep=self._sleep,
        )

    @property
    def _logs(self) -> CloudWatchLogsClient:
        if self._logs_client is None:
            self._logs_client = make_logs_client(self.settings.region)
        return self._logs_client

    # Create --------------------------------------------------------------------------------

    def _create(self, spec: FunctionSpec, deadline: Deadline) -> DeployResult:
        published: builtins.list[str] = []

        def create() -> None:
            with aws_errors(spec.name, "CreateFunction"):
                response = self._lambda.create_function(
                    FunctionName=spec.name,
                    Runtime=self.settings.runtime,  # type: ignore[arg-type]
                    Role=self.settings.role_arn,
                    Handler=RUNTIME_HANDLER,
                    Code={"ZipFile": spec.package},
                    Description=f"custom-metrics agreement metric of project {spec.project}",
                    Timeout=spec.timeout,
                    MemorySize=spec.memory_size,
                    Layers=[self.settings.layer_arn],
                    Architectures=[ARCHITECTURE],
                    Tags=spec.tags,
                    # Publishing here makes version 1, which the service's trial runs before `live` exists.
                    Publish=True,
                )
            published.append(response.get("Version", "1"))
            if response.get("CodeSha256") != spec.code_sha256:
                logger.warning(
                    "Lambda's CodeSha256 differs from the package's SHA-256; redeploys will re-upload",
                    extra={"function": spec.name},
                )

        # A new execution role takes seconds to propagate through IAM. Until then CreateFunction
        # fails with InvalidParameterValueException, the same code Lambda uses for other invalid
        # parameters, so every such error is retried until the deadline. The parameters come from
        # validated settings, so a real misconfiguration costs one deadline of waiting.
        try:
            retry_until(
                create,
                retry_on=(LambdaParameterError, ThrottledError),
                deadline=deadline,
                sleep=self._sleep,
                rng=self._rng,
                description=f"CreateFunction {spec.name}",
            )
        except ThrottledError as error:
            raise _gave_up(spec.name, "CreateFunction", deadline) from error
        logger.info("function created", extra={"function": spec.name, "code_sha256": spec.code_sha256})
        response = self._wait(spec.name, "function_active_v2", deadline)
        self._record("Deploys", 1)
        return DeployResult(DeployOutcome.CREATED, self._info(response, None), published[-1])

    # Update --------------------------------------------------------------------------------

    def _update(
        self,
        spec: FunctionSpec,
        existing: GetFunctionResponseTypeDef,
        live: GetFunctionResponseTypeDef | None,
        deadline: Deadline,
    ) -> DeployResult:
        configuration = existing["Configuration"]
        current_tags = dict(existing.get("Tags", {}))
        status, _ = function_status(configuration)
        # A failed function gets its code again even when the SHA-256 matches: the upload is the repair.
        code_changed = configuration.get("CodeSha256") != spec.code_sha256 or status == STATUS_FAILED
        changes = configuration_changes(configuration, self._desired_configuration(spec))
        tags_to_set, tags_to_remove = diff_tags(current_tags, spec.tags)
        # A Failed $LATEST makes the function report Failed even while `live` serves the spec, so it is repaired.
        serves_spec = status != STATUS_FAILED and live is not None and self._serves(live["Configuration"], spec)
        if serves_spec:
            # $LATEST may still hold a version that failed its trial; it is replaced by the next change.
            code_changed, changes = False, {}
        if serves_spec and not (tags_to_set or tags_to_remove):
            logger.info("function unchanged", extra={"function": spec.name, "code_sha256": spec.code_sha256})
            return DeployResult(DeployOutcome.UNCHANGED, self._info(existing, live))

        arn = configuration["FunctionArn"]
        if code_changed or changes:
            self._tag(spec.name, arn, {DEPLOY_MARKER_TAG: self._now_iso()}, deadline)
            if DEPLOY_MARKER_TAG not in tags_to_remove:
                tags_to_remove.append(DEPLOY_MARKER_TAG)
        if code_changed:
            self._update_code(spec, deadline)
        if changes:
            self._update_configuration(spec.name, changes, deadline)
        if tags_to_set:
            self._tag(spec.name, arn, tags_to_set, deadline)
        if tags_to_remove:
            self._untag(spec.name, arn, tags_to_remove, deadline)
        candidate = None if serves_spec else self._publish(spec, deadline)
        logger.info(
            "function updated", extra={"function": spec.name, "code_sha256": spec.code_sha256, "version": candidate}
        )
        self._record("Deploys", 1)
        return DeployResult(
            DeployOutcome.UPDATED, self._info(self._get_function(spec.name), self._get_live(spec.name)), candidate
        )

    def _serves(self, live: Mapping[str, Any], spec: FunctionSpec) -> bool:
        """Tell whether the live version has the spec's code and configuration and is usable."""
        if function_status(live)[0] == STATUS_FAILED or live.get("CodeSha256") != spec.code_sha256:
            return False
        return not configuration_changes(live, self._desired_configuration(spec))

    def _publish(self, spec: FunctionSpec, deadline: Deadline) -> str:
        """Publish $LATEST; Lambda returns the newest version instead when nothing changed since it."""
        published: builtins.list[str] = []

        def publish() -> None:
            with aws_errors(spec.name, "PublishVersion"):
                # CodeSha256 makes Lambda reject the call if another deploy changed the code meanwhile.
                response = self._lambda.publish_version(FunctionName=spec.name, CodeSha256=spec.code_sha256)
            published.append(response["Version"])

        self._retry_busy(publish, deadline, spec.name, "PublishVersion")
        self._wait(spec.name, "function_active_v2", deadline, qualifier=published[-1])
        return published[-1]

    def _desired_configuration(self, spec: FunctionSpec) -> dict[str, Any]:
        return {
            "Runtime": self.settings.runtime,
            "Role": self.settings.role_arn,
            "Handler": RUNTIME_HANDLER,
            "Timeout": spec.timeout,
            "MemorySize": spec.memory_size,
            "Layers": [self.settings.layer_arn],
        }

    def _update_code(self, spec: FunctionSpec, deadline: Deadline) -> None:
        def update() -> None:
            with aws_errors(spec.name, "UpdateFunctionCode"):
                self._lambda.update_function_code(FunctionName=spec.name, ZipFile=spec.package)

        self._retry_busy(update, deadline, spec.name, "UpdateFunctionCode")
        self._wait_updated(spec.name, deadline)

    def _update_configuration(self, name: str, changes: dict[str, Any], deadline: Deadline) -> None:
        def update() -> None:
            with aws_errors(name, "UpdateFunctionConfiguration"):
                self._lambda.update_function_configuration(FunctionName=name, **changes)

        self._retry_busy(update, deadline, name, "UpdateFunctionConfiguration")
        self._wait_updated(name, deadline)

    def _wait_updated(self, name: str, deadline: Deadline) -> None:
        response = self._wait(name, "function_updated_v2", deadline)
        if function_status(response["Configuration"])[0] == STATUS_PENDING:
            raise ConflictError(
                f"function {name!r} was still updating after {deadline.seconds:g} s, so the deploy stopped "
                "before its last steps; deploy again in a minute"
            )

    def _tag(self, name: str, arn: str, tags: dict[str, str], deadline: Deadline) -> None:
        def tag() -> None:
            with aws_errors(name, "TagResource"):
                self._lambda.tag_resource(Resource=arn, Tags=tags)

        self._retry_busy(tag, deadline, name, "TagResource")

    def _untag(self, name: str, arn: str, keys: builtins.list[str], deadline: Deadline) -> None:
        def untag() -> None:
            with aws_errors(name, "UntagResource"):
                self._lambda.untag_resource(Resource=arn, TagKeys=keys)

        self._retry_busy(untag, deadline, name, "UntagResource")

    # Shared steps --------------------------------------------------------------------------

    def _retry_busy(self, call: Callable[[], None], deadline: Deadline, name: str, operation: str) -> None:
        """Retry `call` while the function is busy (ResourceConflictException) or Lambda throttles."""
        try:
            retry_until(
                call,
                retry_on=(ConflictError, ThrottledError),
                deadline=deadline,
                sleep=self._sleep,
                rng=self._rng,
                description=f"{operation} {name}",
            )
        except ConflictError as error:
            raise ConflictError(f"{error.message}; still busy after {deadline.seconds:g} s") from error
        except ThrottledError as error:
            raise _gave_up(name, operation, deadline) from error

    def _wait(
        self, name: str, waiter_name: WaiterName, deadline: Deadline, *, qualifier: str | None = None
    ) -> GetFunctionResponseTypeDef:
        """Wait with Lambda's waiter until the function is ready; return its last GetFunction response.

        The waiter sleeps `waiter_delay` seconds between polls and stops after the attempts that fit in
        the deadline. A function still Pending then is returned as it is; a Failed one raises.
        """
        # NOTE: the deadline becomes a number of polls, so the wait can overrun it by the time the
        # GetFunction calls themselves take.
        delay = self._waiter_delay
        attempts = max(1, int(deadline.remaining() // max(delay, 1)))
        waiter = (
            self._lambda.get_waiter("function_active_v2")
            if waiter_name == "function_active_v2"
            else self._lambda.get_waiter("function_updated_v2")
        )
        target: dict[str, Any] = {"FunctionName": name}
        if qualifier is not None:
            target["Qualifier"] = qualifier
        try:
            waiter.wait(**target, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
        except WaiterError as error:
            last: dict[str, Any] = dict(error.last_response or {})
            if "Error" in last:
                failure = ClientError(last, "GetFunction")  # type: ignore[arg-type]
                raise translate_client_error(failure, name, "GetFunction") from error
            configuration = last.get("Configuration", {})
            status, reason = function_status(configuration)
            if status == STATUS_FAILED:
                raise DeploymentFailedError(
                    f"function {name!r} did not become Active: {reason}. Fix the cause and deploy again",
                    details={"function": name, "status": status, "status_reason": reason},
                ) from error
            logger.warning("function still %s at the deadline", status, extra={"function": name})
        return self._get_function(name, qualifier)

    def _get_function(self, name: str, qualifier: str | None = None) -> GetFunctionResponseTypeDef:
        with aws_errors(name, "GetFunction"):
            if qualifier is None:
                return self._lambda.get_function(FunctionName=name)
            return self._lambda.get_function(FunctionName=name, Qualifier=qualifier)

    def _get_live(self, name: str) -> GetFunctionResponseTypeDef | None:
        """Return GetFunction on the `live` alias, or None when the function has no such alias."""
        try:
            return self._get_function(name, LIVE_ALIAS)
        except FunctionNotFoundError:
            return None

    def _live_version(self, name: str) -> str | None:
        try:
            with aws_errors(name, "GetAlias"):
                return self._lambda.get_alias(FunctionName=name, Name=LIVE_ALIAS)["FunctionVersion"]
        except FunctionNotFoundError:
            return None

    def _list_names(self) -> builtins.list[str]:
        names: builtins.list[str] = []
        marker: str | None = None
        while True:
            with aws_errors(f"{FUNCTION_NAME_PREFIX}*", "ListFunctions"):
                page = self._lambda.list_functions(Marker=marker) if marker else self._lambda.list_functions()
            for function in page.get("Functions", []):
                name = function.get("FunctionName", "")
                if name.startswith(FUNCTION_NAME_PREFIX):
                    names.append(name)
            marker = page.get("NextMarker")
            if not marker:
                return sorted(names)

    def _info(
        self,
        response: GetFunctionResponseTypeDef,
        live: GetFunctionResponseTypeDef | None,
        *,
        source: str | None = None,
    ) -> FunctionInfo:
        """Describe the function from GetFunction on $LATEST (tags, deploys) and on `live` (the serving version).

        With a live version, `status` is that version's: a deploy in progress or stopped half way
        touches only $LATEST, so it shows in `deploy_status` and the live version keeps serving.
        Without one, the code, configuration and status shown are those of $LATEST.
        """
        configuration = (live or response)["Configuration"]
        tags = dict(response.get("Tags", {}))
        tags.pop(TRIALS_TAG, None)
        latest_status, latest_reason = function_status(response["Configuration"])
        marker = tags.pop(DEPLOY_MARKER_TAG, None)
        if marker is not None and latest_status != STATUS_FAILED:
            latest_status, latest_reason = self._status_during_deploy(marker)
        deploy_status: str | None = None
        deploy_reason: str | None = None
        if live is None:
            status, reason = latest_status, latest_reason
        else:
            status, reason = function_status(live["Configuration"])
            if latest_status in (STATUS_PENDING, STATUS_FAILED):
                deploy_status, deploy_reason = latest_status, latest_reason
        return FunctionInfo(
            name=configuration["FunctionName"],
            project=tags.get(MANAGED_TAG_PROJECT),
            status=status,
            status_reason=reason,
            code_sha256=configuration.get("CodeSha256", ""),
            tags=tags,
            last_modified=normalize_timestamp(configuration.get("LastModified", "")),
            timeout=configuration.get("Timeout", 0),
            memory_size=configuration.get("MemorySize", 0),
            source=source,
            version=live["Configuration"].get("Version") if live is not None else None,
            deploy_status=deploy_status,
            deploy_status_reason=deploy_reason,
        )

    def _status_during_deploy(self, started: str) -> tuple[str, str | None]:
        try:
            age = self._wall_clock() - datetime.fromisoformat(started).timestamp()
        except ValueError:
            age = float("inf")
        if age <= self.settings.deploy_deadline_seconds + _MARKER_GRACE_SECONDS:
            return STATUS_PENDING, f"a deploy started at {started} is in progress"
        return STATUS_FAILED, (
            f"a deploy started at {started} did not finish, so code and configuration may not match; deploy again"
        )

    def _read_source(self, name: str, response: GetFunctionResponseTypeDef) -> str | None:
        location = response.get("Code", {}).get("Location")
        if not location:
            return None
        try:
            return read_source(self._fetch_package(location))
        except (OSError, ValueError, KeyError) as error:
            # The package lives in Lambda's own storage; failing to read it leaves the rest of GET intact.
            logger.warning("could not read the package: %s", type(error).__name__, extra={"function": name})
            return None

    def _record(self, metric: str, value: int) -> None:
        if self._metrics is not None:
            self._metrics(metric, value)

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self._wall_clock(), tz=UTC).isoformat(timespec="seconds")


def _check_limits(spec: FunctionSpec) -> None:
    if not MIN_TIMEOUT_SECONDS <= spec.timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidInputError(
            f"timeout {spec.timeout} s is out of Lambda's range; give {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"
        )
    if not MIN_MEMORY_MB <= spec.memory_size <= MAX_MEMORY_MB:
        raise InvalidInputError(
            f"memory size {spec.memory_size} MB is out of Lambda's range; give {MIN_MEMORY_MB} to {MAX_MEMORY_MB}"
        )


def _gave_up(name: str, operation: str, deadline: Deadline) -> BackendError:
    return BackendError(
        f"Lambda kept throttling or failing {operation} on {name!r} for {deadline.seconds:g} s; retry in a minute"
    )


# Lambda's errorType values for whole-invocation failures, mapped to BatchFailedError reasons.
_FAILURE_REASONS: Mapping[str, str] = {
    "Sandbox.Timedout": "timeout",
    # Lambda's errorType when the function's response is over the 6 MB synchronous limit.
    "Function.ResponseSizeTooLarge": "payload_too_large",
    "Runtime.OutOfMemory": "memory",
    "Runtime.ExitError": "crash",
}


def _batch_failure(name: str, function_error: str, raw: bytes) -> BatchFailedError:
    """Build the BatchFailedError for a response with FunctionError set (Handled or Unhandled)."""
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error_type = str(body.get("errorType") or "unknown")
    error_message = str(body.get("errorMessage") or "no message")[:500]
    reason = _FAILURE_REASONS.get(error_type, "function_error")
    return BatchFailedError(
        reason, f"function {name!r} failed on this batch ({function_error}, {error_type}): {error_message}"
    )


def _parse_result(name: str, raw: bytes) -> dict[str, Any]:
    try:
        result = orjson.loads(raw)
    except orjson.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or not isinstance(result.get("results"), list):
        raise BatchFailedError(
            "function_error", f"function {name!r} returned a response without a `results` list; redeploy the metric"
        )
    return result
