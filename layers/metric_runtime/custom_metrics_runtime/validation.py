"""Checks on what a user's agreement() returns.

A score is a finite real number in [0, 1]. Python ints, floats, fractions and numpy numbers pass and are
converted to float. Booleans (including numpy.bool_) are rejected even though Python treats them as ints,
because `return a == b` is a common bug that would otherwise pass silently as 0 or 1.

A per-label breakdown is a mapping from label names to scores. Names are str; int keys (numpy integers
included) are converted to str, and bool keys are rejected. A plain number returned from the per_label=True
call means the metric has no breakdown: the pair's per_label is None and no error is set.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Mapping
from typing import Any

REPR_LIMIT = 100

_repr = reprlib.Repr()
_repr.maxstring = REPR_LIMIT
_repr.maxother = REPR_LIMIT
_repr.maxlevel = 3


class InvalidReturnValue(Exception):
    """agreement() returned something that is not a score or a per-label breakdown."""


def clean_text(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters and made encodable as UTF-8 (lone surrogates escaped)."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def short_repr(value: object) -> str:
    """Return a repr of `value` cut to about REPR_LIMIT characters, safe against a failing __repr__."""
    try:
        text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a user object's __repr__ may raise anything
        text = f"<{type(value).__name__} object>"
    return clean_text(text, REPR_LIMIT)


def _is_bool(value: object) -> bool:
    # numpy.bool_ (named numpy.bool in numpy 2) is not a Python bool subclass, so match it by type name
    # to avoid importing numpy in the runtime.
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool"))


def _unit_interval_float(value: object) -> float | None:
    """Return `value` as a float if it is a valid score, else None."""
    if type(value) is float:  # fast path: the common case needs no ABC check
        number = value
    elif _is_bool(value) or not isinstance(value, numbers.Real):
        return None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isfinite(number) and 0.0 <= number <= 1.0:
        return number
    return None


def _describe(value: object) -> str:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{short_repr(value)} ({name})"


def to_score(value: object) -> float:
    """Return the score as a float, or raise InvalidReturnValue saying what was returned and what is expected."""
    number = _unit_interval_float(value)
    if number is not None:
        return number
    if _is_bool(value):
        expected = "a number in [0, 1]; booleans are not scores (return float(a == b) for exact match)"
    else:
        expected = "a finite number in [0, 1]"
    raise InvalidReturnValue(f"agreement() returned {_describe(value)}; expected {expected}")


def to_per_label(value: object) -> dict[str, float] | None:
    """Return the per-label breakdown, None for a plain number, or raise InvalidReturnValue."""
    if isinstance(value, numbers.Real) and not _is_bool(value):
        return None
    if not isinstance(value, Mapping):
        raise InvalidReturnValue(
            f"agreement(..., per_label=True) returned {_describe(value)}; "
            "expected a dict of label name to a number in [0, 1], or a plain number for no breakdown"
        )
    return {_label_name(key): _label_score(key, score) for key, score in value.items()}


def _label_name(key: Any) -> str:
    # Int keys (class indices) are common and unambiguous, so they become their decimal text. Bools are
    # rejected, because a True key usually means a comparison was used where a label name was meant.
    if isinstance(key, str):
        return str(key)
    if isinstance(key, numbers.Integral) and not _is_bool(key):
        return str(int(key))
    raise InvalidReturnValue(
        f"agreement(..., per_label=True) returned a dict with key {_describe(key)}; "
        "expected str (or int) label names as keys"
    )


def _label_score(key: str, value: object) -> float:
    number = _unit_interval_float(value)
    if number is not None:
        return number
    raise InvalidReturnValue(
        f"agreement(..., per_label=True) returned {_describe(value)} for label {short_repr(key)}; "
        "expected a finite number in [0, 1] for each label"
    )
