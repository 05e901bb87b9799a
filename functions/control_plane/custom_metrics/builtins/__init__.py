"""Registry of the built-in metrics: which file implements each Label Studio result type.

Each built-in is one standalone metric file in this package that deploys exactly like user code.
Its tunables sit in one module-level literal, written at column 0 as `OPTIONS: dict[str, Any] = {`
and closed by a line that is exactly `}`. `render()` replaces that literal with the defaults
merged with the caller's options, so the deployed file carries its configuration and a user can
copy and edit it (`custom-metrics init --builtin NAME`).

Several names map to the same file when one method covers them. That file scores every control
of every type it understands, whichever of its names was requested.
"""

from __future__ import annotations

import ast
import importlib.resources
import json
import math
import types
from typing import Any

from custom_metrics.errors import InvalidInputError

# Keep one entry per line: engineers add names to this dict in parallel.
BUILTIN_FILES: dict[str, str] = {
    "choices": "exact_match.py",
    "taxonomy": "exact_match.py",
    "pairwise": "exact_match.py",
    "datetime": "exact_match.py",
    "ranker": "exact_match.py",
    "relation": "relation.py",
    "rating": "numeric.py",
    "number": "numeric.py",
    "labels": "spans.py",
    "hypertextlabels": "spans.py",
    "paragraphlabels": "spans.py",
    "timeserieslabels": "spans.py",
    "timelinelabels": "spans.py",
    "textarea": "text.py",
    "rectanglelabels": "image_regions.py",
    "polygonlabels": "image_regions.py",
    "ellipselabels": "image_regions.py",
    "brushlabels": "image_regions.py",
    "keypointlabels": "image_regions.py",
    "videorectangle": "video_regions.py",
}

_OPTIONS_PREFIX = "OPTIONS: dict[str, Any] = {"
_INDENT = "    "


class BuiltinNotFound(InvalidInputError):
    """The requested built-in name is not in the registry."""

    def __init__(self, name: str) -> None:
        valid = names()
        super().__init__(
            f"Built-in metric {name!r} not found. Use one of: {', '.join(valid)}.",
            details={"builtin": name, "valid_builtins": valid},
        )


def names() -> list[str]:
    """Return the built-in names, sorted."""
    return sorted(BUILTIN_FILES)


def source(name: str) -> str:
    """Return the source of the file that implements built-in `name`, with its default options."""
    if name not in BUILTIN_FILES:
        raise BuiltinNotFound(name)
    resource = importlib.resources.files(__package__).joinpath(BUILTIN_FILES[name])
    return resource.read_text(encoding="utf-8")


def summary(name: str) -> str:
    """Return the first line of the built-in's module docstring, for listings."""
    docstring = ast.get_docstring(ast.parse(source(name))) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def default_options(name: str) -> dict[str, Any]:
    """Return the options literal of built-in `name` as a dict."""
    _, literal, _ = _split_options(name, source(name))
    return literal


def render(name: str, options: dict[str, Any] | None = None) -> str:
    """Return the source of built-in `name` with its OPTIONS literal set to defaults merged with `options`.

    Top-level keys of `options` replace the default value whole (a given `control_weights` dict
    replaces the default one, it is not merged key by key). Raises InvalidInputError on an
    unknown key, on a value whose type differs from the default's type, and on a value that the
    built-in's own OPTIONS check rejects (a range, an enum, a weight).
    """
    text = source(name)
    head, defaults, tail = _split_options(name, text)
    merged = dict(defaults)
    for key, value in (options or {}).items():
        _check_option(name, key, value, defaults)
        merged[key] = value
    literal = _format_literal(merged, 0)
    if ast.literal_eval(literal) != merged:
        raise InvalidInputError(f"Invalid options for built-in {name!r}: a value does not survive as a Python literal.")
    rendered = head + "OPTIONS: dict[str, Any] = " + literal + "\n" + tail
    _run_options_check(name, rendered)
    return rendered


def _run_options_check(name: str, rendered: str) -> None:
    """Execute the rendered built-in in a scratch module, so the OPTIONS check that runs at its import runs now.

    The built-in raises its own OptionError, a ValueError with an `option` attribute. Any other
    exception means the built-in file itself is broken, so it propagates as a platform error.
    """
    module = types.ModuleType(f"custom_metrics_builtin_check_{name}")
    try:
        # The source is a file of this package with only the OPTIONS literal replaced, not user code.
        exec(compile(rendered, BUILTIN_FILES[name], "exec"), module.__dict__)  # noqa: S102
    except ValueError as error:
        option = getattr(error, "option", None)
        if not isinstance(option, str):
            raise
        raise InvalidInputError(f"Built-in {name!r}: {error}", details={"builtin": name, "option": option}) from error


def _split_options(name: str, text: str) -> tuple[str, dict[str, Any], str]:
    """Split a built-in source into (text before the literal, parsed literal, text after it)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(_OPTIONS_PREFIX)), None)
    if start is None:
        raise ValueError(f"Built-in {name!r} has no line starting with {_OPTIONS_PREFIX!r}; fix the file.")
    end = next((i for i in range(start, len(lines)) if lines[i].rstrip("\r\n") == "}"), None)
    if end is None:
        raise ValueError(f"Built-in {name!r}: the OPTIONS literal has no closing line '}}'; fix the file.")
    literal_text = "".join(lines[start : end + 1])[len("OPTIONS: dict[str, Any] = ") :]
    literal = ast.literal_eval(literal_text)
    if not isinstance(literal, dict):
        raise ValueError(f"Built-in {name!r}: OPTIONS is not a dict literal; fix the file.")
    return "".join(lines[:start]), literal, "".join(lines[end + 1 :])


def _check_option(name: str, key: Any, value: Any, defaults: dict[str, Any]) -> None:
    if key not in defaults:
        raise InvalidInputError(
            f"Unknown option {key!r} for built-in {name!r}. Valid options: {', '.join(sorted(defaults))}.",
            details={"builtin": name, "option": str(key), "valid_options": sorted(defaults)},
        )
    expected = _option_kind(defaults[key])
    if expected is not None and _option_kind(value) != expected and not _is_unset_number(value, expected):
        raise InvalidInputError(
            f"Invalid value for option {key!r} of built-in {name!r}: expected {expected}, "
            f"got {type(value).__name__}. Pass a value of the same type as the default {defaults[key]!r}.",
            details={"builtin": name, "option": key},
        )
    try:
        _format_literal(value, 0)
    except ValueError as error:
        raise InvalidInputError(
            f"Invalid value for option {key!r} of built-in {name!r}: {error}.", details={"builtin": name, "option": key}
        ) from error


def _option_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return None  # a default of None accepts any literal value


def _is_unset_number(value: Any, expected: str) -> bool:
    # A numeric option accepts None, which the built-ins read as "not set" (e.g. no tolerance).
    return expected == "number" and value is None


def _format_literal(value: Any, depth: int) -> str:
    """Format a JSON-like value as a Python literal: dicts one key per line with trailing commas.

    Raises ValueError on a value that is not finite JSON.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number; give a finite number")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (\\n, \\", \\uXXXX for control characters) are valid Python escapes too.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_format_literal(item, depth + 1) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = _INDENT * (depth + 1)
        entries = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"the object key {key!r} is not a string; use string keys")
            entries.append(f"{inner}{_format_literal(key, depth + 1)}: {_format_literal(item, depth + 1)},\n")
        return "{\n" + "".join(entries) + _INDENT * depth + "}"
    raise ValueError(
        f"a value of type {type(value).__name__} has no JSON form; use an object, list, string, number, bool or null"
    )
