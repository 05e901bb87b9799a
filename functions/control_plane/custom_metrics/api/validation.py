"""Request bodies parsed and validated against the JSON Schema files in custom_metrics/schemas."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from jsonschema import Draft202012Validator

from custom_metrics.errors import InvalidInputError


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    text = resources.files("custom_metrics").joinpath("schemas", f"{schema_name}.json").read_text("utf-8")
    return Draft202012Validator(json.loads(text))


def json_body(router: Router, schema_name: str) -> dict[str, Any]:
    """Parse the request body as JSON and validate it; raise InvalidInputError naming the field."""
    try:
        raw = router.current_event.decoded_body
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the request body is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "send JSON encoded as UTF-8"
        ) from exc
    if not raw:
        raise InvalidInputError("the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInputError("the request body nests JSON arrays or objects too deeply to parse") from exc
    errors = sorted(_validator(schema_name).iter_errors(body), key=lambda error: list(error.absolute_path))
    if errors:
        problems = [_describe(error) for error in errors[:10]]
        raise InvalidInputError(f"invalid request body: {'; '.join(problems)}", details={"errors": problems})
    assert isinstance(body, dict)
    return body


def _describe(error: Any) -> str:
    location = "/".join(str(part) for part in error.absolute_path) or "(body)"
    if error.validator == "oneOf" and not error.absolute_path:
        return "give exactly one of `code` or `builtin`"
    if error.validator == "additionalProperties":
        return f"at {location}: {error.message}; remove the unknown field"
    return f"at {location}: {error.message}"


def query_int(router: Router, name: str, default: int, *, low: int, high: int) -> int:
    raw = router.current_event.get_query_string_value(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidInputError(f"query parameter {name}={raw!r} is not a whole number") from exc
    if not low <= value <= high:
        raise InvalidInputError(f"query parameter {name}={value} is out of range; give {low} to {high}")
    return value


def query_float(router: Router, name: str, default: float) -> float:
    raw = router.current_event.get_query_string_value(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidInputError(f"query parameter {name}={raw!r} is not a number of Unix seconds") from exc
    if not math.isfinite(value):
        raise InvalidInputError(f"query parameter {name}={raw!r} is not a finite number of Unix seconds")
    return value
