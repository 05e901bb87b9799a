"""Numeric agreement for rating and number results.

Each result is an item holding one number (`value.rating` or `value.number`). Two items score:
- rating: 1 - |a - b| / (rating_max - 1), clipped to [0, 1] (Label Studio ratings run from 1 to
  maxRating, so rating_max must match the labeling config's maxRating);
- number: with `number_tolerance` set, 1 when |a - b| <= tolerance and 0 otherwise; else with
  `number_range` set, 1 - |a - b| / range clipped to [0, 1]; else 1 only when a == b.
  Both options take one number or an object of from_name -> number.
Within one control (`from_name`), items pair one to one by Hungarian matching on that score.
The control scores 2 * (sum of paired scores) / (items in annotation_1 + items in annotation_2),
so an item on one side only counts as 0. Per-region numbers are compared as such a multiset,
without regard to the region they belong to. The task score is the mean of the control scores
weighted by `control_weights` times `label_weights`. Other result types are ignored. When neither
annotation has a rating or number result the score is 1.0. Numbers carry no label, so
per_label=True returns {from_name: score}, and `label_weights` are keyed by from_name too.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "rating_max": 5,
    "number_tolerance": None,
    "number_range": None,
}

RESULT_TYPES = ("rating", "number")


class OptionError(ValueError):
    """An invalid value in OPTIONS. Its `option` attribute names the top-level key, so callers can report it."""

    def __init__(self, option: str, value: Any, expected: str, key: str | None = None) -> None:
        where = option if key is None else f"{option}[{key!r}]"
        super().__init__(f"Invalid option {where}={value!r}: expected {expected}.")
        self.option = option


def _check_options(options: dict[str, Any]) -> None:
    """Raise OptionError on the first invalid value in `options`."""
    _check_weights(options, "control_weights")
    _check_weights(options, "label_weights")
    _check_per_control(options, "rating_max", 1, inclusive=False, optional=False)
    _check_per_control(options, "number_tolerance", 0, inclusive=True, optional=True)
    _check_per_control(options, "number_range", 0, inclusive=False, optional=True)


def _check_per_control(options: dict[str, Any], option: str, minimum: float, inclusive: bool, optional: bool) -> None:
    """Check a setting that is one number or an object of from_name -> number; null means "not set" if optional."""
    setting = options.get(option)
    entries = list(setting.items()) if isinstance(setting, dict) else [(None, setting)]
    expected = f"a finite number {'>=' if inclusive else '>'} {minimum}" + (" or null" if optional else "")
    if not isinstance(setting, dict):
        expected += ", or an object of from_name -> number"
    for key, number in entries:
        if number is None and optional:
            continue
        if not _is_number(number) or number < minimum or (number == minimum and not inclusive):
            raise OptionError(option, number, expected, key)


def _check_weights(options: dict[str, Any], option: str) -> None:
    weights = options.get(option)
    if not isinstance(weights, dict):
        raise OptionError(option, weights, "an object of name -> weight")
    for key, weight in weights.items():
        if not _is_number(weight) or weight < 0:
            raise OptionError(option, weight, "a finite number >= 0", key)


def _is_number(raw: Any) -> TypeGuard[int | float]:
    return not isinstance(raw, bool) and isinstance(raw, int | float) and math.isfinite(raw)


# Runs at import, so a file with invalid OPTIONS fails when it loads instead of on every pair.
_check_options(OPTIONS)


def agreement(
    annotation_1: dict[str, Any], annotation_2: dict[str, Any], per_label: bool = False
) -> float | dict[str, float]:
    """Score the agreement of two annotations on their rating and number results."""
    items_1 = _collect_items(annotation_1)
    items_2 = _collect_items(annotation_2)
    control_scores: dict[str, tuple[float, float]] = {}
    for control in sorted(set(items_1) | set(items_2)):
        weight = _weight(OPTIONS["control_weights"], control, "control_weights")
        weight *= _weight(OPTIONS["label_weights"], control, "label_weights")
        if weight == 0:
            continue
        control_scores[control] = (weight, _score_control(items_1.get(control, []), items_2.get(control, []), control))
    if per_label:
        return {control: score for control, (_, score) in control_scores.items()}
    return _weighted_mean(list(control_scores.values())) if control_scores else 1.0


def _collect_items(annotation: dict[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Group (result type, number) items by from_name."""
    items: dict[str, list[tuple[str, float]]] = {}
    for result in _results(annotation):
        result_type = result["type"]
        if result_type not in RESULT_TYPES:
            continue
        control = _control_name(result)
        value = result.get("value")
        number = value.get(result_type) if isinstance(value, dict) else None
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError(
                f"Region {result.get('id')!r} of {control!r}: missing or invalid 'value.{result_type}'; "
                f"expected a finite number, got {number!r}."
            )
        items.setdefault(control, []).append((result_type, float(number)))
    return items


def _results(annotation: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(annotation, dict):
        kind = type(annotation).__name__
        raise ValueError(f"Invalid annotation: expected an object with a 'result' list, got {kind}.")
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise ValueError(f"Invalid annotation: 'result' must be a list, got {type(results).__name__}.")
    for index, result in enumerate(results):
        if not isinstance(result, dict) or not isinstance(result.get("type"), str):
            raise ValueError(f"Invalid result at index {index}: expected an object with a string 'type'.")
    return results


def _control_name(result: dict[str, Any]) -> str:
    control = result.get("from_name")
    if not isinstance(control, str) or not control:
        raise ValueError(f"Region {result.get('id')!r}: missing or invalid 'from_name'; expected a string.")
    return control


def _score_control(side_1: list[tuple[str, float]], side_2: list[tuple[str, float]], control: str) -> float:
    weights = [[_score_items(item_1, item_2, control) for item_2 in side_2] for item_1 in side_1]
    matched = math.fsum(weights[i][j] for i, j in _max_weight_matching(weights))
    return 2 * matched / (len(side_1) + len(side_2))


def _score_items(item_1: tuple[str, float], item_2: tuple[str, float], control: str) -> float:
    (type_1, number_1), (type_2, number_2) = item_1, item_2
    if type_1 != type_2:
        return 0.0
    difference = abs(number_1 - number_2)
    if type_1 == "rating":
        rating_max = _positive_option("rating_max", control)
        if rating_max is None:
            raise ValueError(f"Invalid option rating_max: no value for {control!r}; add {control!r} to it.")
        return max(0.0, 1 - difference / (rating_max - 1))
    tolerance = _positive_option("number_tolerance", control)
    if tolerance is not None:
        return 1.0 if difference <= tolerance else 0.0
    number_range = _positive_option("number_range", control)
    if number_range is not None:
        return max(0.0, 1 - difference / number_range)
    return 1.0 if difference == 0 else 0.0


def _positive_option(option: str, control: str) -> float | None:
    """Return the option's number for `control` (a number, or an object of from_name -> number), or None."""
    setting = OPTIONS[option]
    if isinstance(setting, dict):
        setting = setting.get(control)
    if setting is None:
        return None
    if isinstance(setting, bool) or not isinstance(setting, int | float) or not setting >= 0 or math.isinf(setting):
        raise ValueError(f"Invalid option {option} for {control!r}: expected a finite number >= 0, got {setting!r}.")
    return float(setting)


def _weight(weights: Any, key: str, option: str) -> float:
    if not isinstance(weights, dict):
        kind = type(weights).__name__
        raise ValueError(f"Invalid option {option}: expected an object of name -> weight, got {kind}.")
    weight = weights.get(key, 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0 or math.isinf(weight):
        raise ValueError(f"Invalid option {option}[{key!r}]={weight!r}: expected a finite number >= 0.")
    return float(weight)


def _weighted_mean(scores: list[tuple[float, float]]) -> float:
    total = math.fsum(weight for weight, _ in scores)
    return math.fsum(weight * score for weight, score in scores) / total


def _max_weight_matching(weights: list[list[float]]) -> list[tuple[int, int]]:
    """Return the (row, column) pairs of a one-to-one assignment maximizing the total weight (Hungarian method).

    Weights must be >= 0. Every row of the smaller dimension is assigned, so pairs of weight 0 may appear.
    """
    if not weights or not weights[0]:
        return []
    transposed = len(weights) > len(weights[0])
    matrix = [list(column) for column in zip(*weights, strict=True)] if transposed else weights
    rows, columns = len(matrix), len(matrix[0])
    top = max(max(row) for row in matrix)
    # Potentials method on costs top - weight, 1-based with column 0 as the free slot.
    row_potential = [0.0] * (rows + 1)
    column_potential = [0.0] * (columns + 1)
    owner = [0] * (columns + 1)
    previous = [0] * (columns + 1)
    for row in range(1, rows + 1):
        owner[0] = row
        column = 0
        slack = [math.inf] * (columns + 1)
        used = [False] * (columns + 1)
        while owner[column] != 0:
            used[column] = True
            current_row = owner[column]
            delta = math.inf
            next_column = 0
            for j in range(1, columns + 1):
                if used[j]:
                    continue
                cost = top - matrix[current_row - 1][j - 1] - row_potential[current_row] - column_potential[j]
                if cost < slack[j]:
                    slack[j] = cost
                    previous[j] = column
                if slack[j] < delta:
                    delta = slack[j]
                    next_column = j
            for j in range(columns + 1):
                if used[j]:
                    row_potential[owner[j]] += delta
                    column_potential[j] -= delta
                else:
                    slack[j] -= delta
            column = next_column
        while column != 0:
            prior = previous[column]
            owner[column] = owner[prior]
            column = prior
    pairs = [(owner[j] - 1, j - 1) for j in range(1, columns + 1) if owner[j] != 0]
    return [(j, i) for i, j in pairs] if transposed else pairs
