"""Text agreement for textarea results: normalized Levenshtein similarity.

Each textarea result is an item holding its text (a list of lines is joined with newlines). With
`normalize_whitespace`, leading and trailing whitespace is stripped and inner runs collapse to one
space; with `lowercase`, case is ignored. Two items score 1 - Levenshtein distance / length of the
longer text (1.0 for two empty texts), computed with rapidfuzz when it is installed and with a
pure-Python dynamic program otherwise (same values, slower on long texts).
Within one control (`from_name`), items pair one to one by Hungarian matching on that score.
The control scores 2 * (sum of paired scores) / (items in annotation_1 + items in annotation_2),
so an item on one side only counts as 0. Per-region texts are compared as such a multiset,
without regard to the region they belong to. The task score is the mean of the control scores
weighted by `control_weights` times `label_weights`. Other result types are ignored. When neither
annotation has a textarea result the score is 1.0. Texts carry no label, so per_label=True returns
{from_name: score}, and `label_weights` are keyed by from_name too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "normalize_whitespace": True,
    "lowercase": False,
}

RESULT_TYPES = ("textarea",)


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
    for option in ("normalize_whitespace", "lowercase"):
        if not isinstance(options.get(option), bool):
            raise OptionError(option, options.get(option), "true or false")


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


def _load_rapidfuzz() -> Callable[[str, str], float] | None:
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:
        return None
    similarity: Callable[[str, str], float] = Levenshtein.normalized_similarity
    return similarity


_RAPIDFUZZ_SIMILARITY = _load_rapidfuzz()


def agreement(
    annotation_1: dict[str, Any], annotation_2: dict[str, Any], per_label: bool = False
) -> float | dict[str, float]:
    """Score the agreement of two annotations on their textarea results."""
    items_1 = _collect_items(annotation_1)
    items_2 = _collect_items(annotation_2)
    control_scores: dict[str, tuple[float, float]] = {}
    for control in sorted(set(items_1) | set(items_2)):
        weight = _weight(OPTIONS["control_weights"], control, "control_weights")
        weight *= _weight(OPTIONS["label_weights"], control, "label_weights")
        if weight == 0:
            continue
        control_scores[control] = (weight, _score_control(items_1.get(control, []), items_2.get(control, [])))
    if per_label:
        return {control: score for control, (_, score) in control_scores.items()}
    return _weighted_mean(list(control_scores.values())) if control_scores else 1.0


def _collect_items(annotation: dict[str, Any]) -> dict[str, list[str]]:
    """Group normalized texts by from_name."""
    items: dict[str, list[str]] = {}
    for result in _results(annotation):
        if result["type"] not in RESULT_TYPES:
            continue
        control = _control_name(result)
        value = result.get("value")
        text = value.get("text") if isinstance(value, dict) else None
        if isinstance(text, list) and all(isinstance(line, str) for line in text):
            text = "\n".join(text)
        if not isinstance(text, str):
            raise ValueError(
                f"Region {result.get('id')!r} of {control!r}: missing or invalid 'value.text'; "
                "expected a string or a list of strings."
            )
        items.setdefault(control, []).append(_normalize(text))
    return items


def _normalize(text: str) -> str:
    if OPTIONS["normalize_whitespace"] is True:
        text = " ".join(text.split())
    if OPTIONS["lowercase"] is True:
        text = text.lower()
    return text


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


def _score_control(side_1: list[str], side_2: list[str]) -> float:
    weights = [[text_similarity(text_1, text_2) for text_2 in side_2] for text_1 in side_1]
    matched = math.fsum(weights[i][j] for i, j in _max_weight_matching(weights))
    return 2 * matched / (len(side_1) + len(side_2))


def text_similarity(text_1: str, text_2: str) -> float:
    """Return 1 - Levenshtein distance / max(len(text_1), len(text_2)), or 1.0 for two empty texts."""
    if _RAPIDFUZZ_SIMILARITY is not None:
        return _RAPIDFUZZ_SIMILARITY(text_1, text_2)
    return _levenshtein_similarity(text_1, text_2)


def _levenshtein_similarity(text_1: str, text_2: str) -> float:
    longest = max(len(text_1), len(text_2))
    if longest == 0:
        return 1.0
    if len(text_1) < len(text_2):
        text_1, text_2 = text_2, text_1
    previous = list(range(len(text_2) + 1))
    for i, char_1 in enumerate(text_1, start=1):
        current = [i]
        for j, char_2 in enumerate(text_2, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_1 != char_2)))
        previous = current
    return 1 - previous[-1] / longest


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
