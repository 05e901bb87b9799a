"""Pure helpers of the Lambda backend: status mapping, configuration and tag diffs, timestamps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from custom_metrics.backends.base import (
    STATUS_ACTIVE,
    STATUS_FAILED,
    STATUS_INACTIVE,
    STATUS_PENDING,
    TRIAL_FAILED,
    TRIAL_PASSED,
    TRIAL_SKIPPED,
)

# Set while a deploy changes code or configuration; its value is the deploy's start (ISO 8601, UTC).
DEPLOY_MARKER_TAG = "custom-metrics:deploy-started"
# Lambda tags a function but not its versions, so the trial outcome of each version is kept in one
# function tag, as "1:p 2:f 3:s" (passed, failed, skipped), newest last.
TRIALS_TAG = "custom-metrics:trials"
_MAX_TAG_VALUE_LENGTH = 256
_TRIAL_CODES = {TRIAL_PASSED: "p", TRIAL_FAILED: "f", TRIAL_SKIPPED: "s"}
_TRIAL_OUTCOMES = {code: outcome for outcome, code in _TRIAL_CODES.items()}


def function_status(configuration: Mapping[str, Any]) -> tuple[str, str | None]:
    """Map Lambda's `State` and `LastUpdateStatus` to the project's status and its reason."""
    state = configuration.get("State") or STATUS_ACTIVE
    update = configuration.get("LastUpdateStatus") or "Successful"
    if state == "Failed":
        return STATUS_FAILED, configuration.get("StateReason") or "Lambda reported the state Failed with no reason"
    if state == "Pending":
        return STATUS_PENDING, configuration.get("StateReason")
    if state == "Inactive":
        # Lambda deactivates a function idle for weeks; the next invocation reactivates it.
        return STATUS_INACTIVE, configuration.get("StateReason")
    if update == "Failed":
        return STATUS_FAILED, configuration.get("LastUpdateStatusReason") or "the last update failed with no reason"
    if update == "InProgress":
        return STATUS_PENDING, configuration.get("LastUpdateStatusReason")
    return STATUS_ACTIVE, None


def configuration_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Return the UpdateFunctionConfiguration arguments for the keys of `desired` that differ."""
    changes: dict[str, Any] = {}
    for key, value in desired.items():
        present = current.get(key)
        if key == "Layers":
            present = [layer.get("Arn") for layer in current.get("Layers", [])]
        if present != value:
            changes[key] = value
    return changes


def diff_tags(current: Mapping[str, str], desired: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Return the tags to set (new or changed values) and the keys to remove."""
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    kept = {TRIALS_TAG}
    to_remove = sorted(key for key in current if key not in desired and key not in kept and not key.startswith("aws:"))
    return to_set, to_remove


def parse_trials(value: str | None) -> dict[str, str]:
    """Read the trials tag into version -> outcome; unknown entries are skipped."""
    trials: dict[str, str] = {}
    for item in (value or "").split():
        version, _, code = item.partition(":")
        if version.isdigit() and code in _TRIAL_OUTCOMES:
            trials[version] = _TRIAL_OUTCOMES[code]
    return trials


def format_trials(trials: Mapping[str, str]) -> str:
    """Write version -> outcome as the tag's value, dropping the oldest versions past Lambda's 256 characters."""
    items = [f"{version}:{_TRIAL_CODES[outcome]}" for version, outcome in sorted(trials.items(), key=_version_key)]
    while items and len(" ".join(items)) > _MAX_TAG_VALUE_LENGTH:
        items.pop(0)
    return " ".join(items)


def _version_key(item: tuple[str, str]) -> int:
    return int(item[0])


def normalize_timestamp(value: str) -> str:
    """Turn Lambda's `2024-05-01T12:00:00.000+0000` into ISO 8601 in seconds (`2024-05-01T12:00:00+00:00`)."""
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return value
    return moment.astimezone(UTC).isoformat(timespec="seconds")
