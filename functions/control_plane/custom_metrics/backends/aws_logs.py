"""Read a metric function's log lines with a CloudWatch Logs Insights query, polled up to a deadline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from custom_metrics.backends.aws_client import Deadline, Sleep, aws_errors, error_code
from custom_metrics.backends.base import LogRow
from custom_metrics.errors import BackendError, InvalidInputError

if TYPE_CHECKING:
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import ResultFieldTypeDef

logger = logging.getLogger(__name__)

# Logs Insights returns at most 10,000 rows per query.
MAX_LOG_ROWS = 10_000
POLL_INTERVAL_SECONDS = 0.5
_DONE_STATUSES = frozenset({"Complete"})
_FAILED_STATUSES = frozenset({"Failed", "Cancelled", "Timeout", "Unknown"})


def log_group_name(function: str) -> str:
    return f"/aws/lambda/{function}"


def build_query(limit: int) -> str:
    # The newest rows are kept when the limit cuts; the caller puts them back in time order.
    return f"fields @timestamp, @message, @requestId | sort @timestamp desc | limit {limit}"


def query_function_logs(
    client: CloudWatchLogsClient,
    function: str,
    *,
    start: float,
    end: float,
    limit: int,
    deadline: Deadline,
    sleep: Sleep,
    poll_interval: float = POLL_INTERVAL_SECONDS,
) -> list[LogRow]:
    """Return up to `limit` log rows of `function` between `start` and `end` (epoch seconds), oldest first.

    A function that has never run has no log group yet, which gives an empty list.
    """
    _check_range(start, end, limit)
    query_id = _start_query(client, function, start, end, limit)
    if query_id is None:
        return []
    while True:
        with aws_errors(function, "GetQueryResults"):
            response = client.get_query_results(queryId=query_id)
        status = response.get("status", "Unknown")
        if status in _DONE_STATUSES:
            rows = [_row(fields) for fields in response.get("results", [])]
            return sorted(rows, key=lambda row: row.timestamp)
        if status in _FAILED_STATUSES:
            raise BackendError(
                f"the Logs Insights query on {log_group_name(function)} ended with status {status}; "
                "retry, or narrow the time range"
            )
        if deadline.remaining() <= poll_interval:
            raise BackendError(
                f"the Logs Insights query on {log_group_name(function)} did not complete within "
                f"{deadline.seconds:g} s; narrow the time range or lower the limit, then retry"
            )
        sleep(poll_interval)


def _check_range(start: float, end: float, limit: int) -> None:
    if end <= start:
        raise InvalidInputError(
            f"log range start={start:g} is not before end={end:g}; give start < end (epoch seconds)"
        )
    if not 1 <= limit <= MAX_LOG_ROWS:
        raise InvalidInputError(f"log limit {limit} is out of range; give 1 to {MAX_LOG_ROWS}")


def _start_query(client: CloudWatchLogsClient, function: str, start: float, end: float, limit: int) -> str | None:
    try:
        response = client.start_query(
            logGroupName=log_group_name(function),
            startTime=int(start),
            endTime=int(end) + 1,
            queryString=build_query(limit),
            limit=limit,
        )
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            logger.info("no log group yet", extra={"function": function})
            return None
        with aws_errors(function, "StartQuery"):
            raise
    return response["queryId"]


def _row(fields: Sequence[ResultFieldTypeDef]) -> LogRow:
    values = {field.get("field", ""): field.get("value", "") for field in fields}
    return LogRow(
        timestamp=_iso_timestamp(values.get("@timestamp", "")),
        message=values.get("@message", "").rstrip("\n"),
        request_id=values.get("@requestId") or None,
    )


def _iso_timestamp(value: str) -> str:
    """Normalize Logs Insights' `2024-05-01 12:00:00.123` (UTC) or epoch milliseconds to ISO 8601."""
    if value.isdigit():
        moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        return moment.isoformat(timespec="milliseconds")
    try:
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return value
    return moment.isoformat(timespec="milliseconds")
