"""Function names and tags, checked against AWS Lambda's rules before anything is stored.

Both backends apply the same rules, so a metric that deploys locally also deploys to Lambda.
Every violation in a request is collected and reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from custom_metrics.errors import InvalidInputError

FUNCTION_NAME_BASE = "custom-metric"
MAX_FUNCTION_NAME_LENGTH = 64
NAME_PART_PATTERN = re.compile(r"[A-Za-z0-9_-]+")

# Lambda counts every tag on a function, the managed ones included, against its limit of 50.
LAMBDA_MAX_TAGS = 50
MANAGED_TAG_PROJECT = "custom-metrics:project"
MANAGED_TAG_MANAGED_BY = "custom-metrics:managed-by"
MANAGED_TAG_KEYS = (MANAGED_TAG_PROJECT, MANAGED_TAG_MANAGED_BY)
MAX_USER_TAGS = LAMBDA_MAX_TAGS - len(MANAGED_TAG_KEYS)
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
# Lambda accepts letters, digits and spaces in any script, and these symbols: _ . : / = + - @
TAG_PATTERN = re.compile(r"[\w .:/=+\-@]*", re.UNICODE)


def function_name(project: str, prefix: str | None = None) -> str:
    """Build `custom-metric-<prefix>-<project>` (or `custom-metric-<project>`), checking Lambda's rules."""
    problems = _name_part_problems("project", project)
    if prefix:
        problems += _name_part_problems("prefix", prefix)
    if problems:
        raise InvalidInputError("; ".join(problems), details={"errors": problems})

    name = f"{FUNCTION_NAME_BASE}-{prefix}-{project}" if prefix else f"{FUNCTION_NAME_BASE}-{project}"
    if len(name) > MAX_FUNCTION_NAME_LENGTH:
        message = (
            f"function name {name!r} is {len(name)} characters, over Lambda's limit of "
            f"{MAX_FUNCTION_NAME_LENGTH}; use a shorter project id or prefix"
        )
        raise InvalidInputError(message, details={"errors": [message]})
    return name


def _name_part_problems(field: str, value: str) -> list[str]:
    if not value:
        return [f"{field} is empty; use letters, digits, '-' or '_'"]
    if not NAME_PART_PATTERN.fullmatch(value):
        return [
            f"{field} {value!r} contains characters Lambda function names reject; use only letters, digits, '-', '_'"
        ]
    return []


def validate_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Check user tags against Lambda's rules; raise InvalidInputError listing every violation."""
    problems: list[str] = []
    if len(tags) > MAX_USER_TAGS:
        problems.append(
            f"{len(tags)} tags given, over the limit of {MAX_USER_TAGS} "
            f"(Lambda allows {LAMBDA_MAX_TAGS} and {len(MANAGED_TAG_KEYS)} are managed by custom-metrics)"
        )
    for key, value in tags.items():
        problems.extend(_tag_problems(key, value))
    if problems:
        raise InvalidInputError(f"invalid tags: {'; '.join(problems)}", details={"errors": problems})
    return dict(tags)


def _tag_problems(key: object, value: object) -> list[str]:
    if not isinstance(key, str) or not isinstance(value, str):
        return [f"tag {key!r}: key and value must be strings"]
    problems: list[str] = []
    if not key:
        problems.append("a tag key is empty")
    if len(key) > MAX_TAG_KEY_LENGTH:
        problems.append(f"tag key {key[:40]!r}... is {len(key)} characters, over the limit of {MAX_TAG_KEY_LENGTH}")
    if len(value) > MAX_TAG_VALUE_LENGTH:
        problems.append(f"tag {key!r}: value is {len(value)} characters, over the limit of {MAX_TAG_VALUE_LENGTH}")
    if key.lower().startswith("aws:"):
        problems.append(f"tag key {key!r} starts with 'aws:', which AWS reserves")
    if key in MANAGED_TAG_KEYS:
        problems.append(f"tag key {key!r} is set by custom-metrics itself; choose another key")
    if not TAG_PATTERN.fullmatch(key):
        problems.append(
            f"tag key {key!r} contains characters Lambda rejects; allowed: letters, digits, spaces, _ . : / = + - @"
        )
    if not TAG_PATTERN.fullmatch(value):
        problems.append(f"tag {key!r}: value {value!r} contains characters Lambda rejects")
    return problems


def tags_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Turn repeated `--tag NAME VALUE` options into a dict; a repeated key is an error."""
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise InvalidInputError(f"tag {key!r} is given twice; give each tag once")
        tags[key] = value
    return tags


def managed_tags(project: str) -> dict[str, str]:
    return {MANAGED_TAG_PROJECT: project, MANAGED_TAG_MANAGED_BY: "custom-metrics"}
