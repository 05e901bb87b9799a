"""Exact-match agreement for choices, taxonomy, pairwise, datetime and ranker results.

Each result is an item that contains a set of selections. A selection is a choice (a nested choice
is its path), a taxonomy path, the pairwise `selected` side, the datetime (ISO values compared
after parsing), or a ranker placement: (position, item id) in list mode, (bucket, item id) in
bucket mode.
Two items score the weighted Jaccard index of their selections: identical selections pair one to
one, and a selection on one side only counts against the score. With `"selection_match": "exact"`
two items score 1 only when their selections are identical. With `taxonomy_partial_credit`, two
taxonomy paths pair with credit common-prefix length / longer path length.
Within one control (`from_name`), items pair one to one by Hungarian matching on that score.
The control scores 2 * (sum of paired scores) / (items in annotation_1 + items in annotation_2),
so an item on one side only counts as 0. Per-region classifications are compared as such a
multiset, without regard to the region they belong to. The task score is the mean of the control
scores weighted by `control_weights`. Other result types are ignored. When neither annotation has
a result of these types the score is 1.0. per_label=True returns {label: score}, keyed by choice,
taxonomy path ("A / B"), pairwise side, ranker item or bucket, and by from_name for datetime. A
label scores 2 * (its selections on both sides) / (its selections on either side), or, with
partial credit, a taxonomy path on one side only scores its best credit against the other side's
paths. One label used by several controls gets the weighted mean of its per-control scores.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "selection_match": "jaccard",
    "taxonomy_partial_credit": False,
}

RESULT_TYPES = ("choices", "taxonomy", "pairwise", "datetime", "ranker")

Selection = tuple[str, ...]


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
    selection_match = options.get("selection_match")
    if selection_match not in ("jaccard", "exact"):
        raise OptionError("selection_match", selection_match, "'jaccard' or 'exact'")
    partial_credit = options.get("taxonomy_partial_credit")
    if not isinstance(partial_credit, bool):
        raise OptionError("taxonomy_partial_credit", partial_credit, "true or false")


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


class _Item:
    """One result: its selections, each with the label it is reported under."""

    def __init__(self, result_type: str, selections: dict[Selection, str]) -> None:
        self.result_type = result_type
        self.selections = selections


def agreement(
    annotation_1: dict[str, Any], annotation_2: dict[str, Any], per_label: bool = False
) -> float | dict[str, float]:
    """Score the agreement of two annotations on their choices, taxonomy, pairwise, datetime and ranker results."""
    items_1 = _collect_items(annotation_1)
    items_2 = _collect_items(annotation_2)
    control_scores: list[tuple[float, float]] = []
    label_scores: dict[str, list[tuple[float, float]]] = {}
    for control in sorted(set(items_1) | set(items_2)):
        weight = _weight(OPTIONS["control_weights"], control, "control_weights")
        side_1 = items_1.get(control, [])
        side_2 = items_2.get(control, [])
        if weight == 0 or not (side_1 or side_2):
            continue
        control_scores.append((weight, _score_control(side_1, side_2)))
        for label, score in _score_labels(side_1, side_2).items():
            label_scores.setdefault(label, []).append((weight, score))
    if per_label:
        return {label: _weighted_mean(scores) for label, scores in sorted(label_scores.items())}
    return _weighted_mean(control_scores) if control_scores else 1.0


def _collect_items(annotation: dict[str, Any]) -> dict[str, list[_Item]]:
    """Group the results of the supported types by from_name, dropping selections whose label weight is 0."""
    items: dict[str, list[_Item]] = {}
    for result in _results(annotation):
        result_type = result.get("type")
        if result_type not in RESULT_TYPES:
            continue
        control = _control_name(result)
        selections = _parse_selections(result, control)
        kept = {
            key: label
            for key, label in selections.items()
            if _weight(OPTIONS["label_weights"], label, "label_weights") > 0
        }
        if kept or not selections:
            items.setdefault(control, []).append(_Item(result_type, kept))
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


def _value_field(result: dict[str, Any], control: str, key: str) -> Any:
    value = result.get("value")
    if not isinstance(value, dict) or key not in value:
        raise ValueError(f"Region {result.get('id')!r} of {control!r}: missing 'value.{key}'.")
    return value[key]


def _invalid(result: dict[str, Any], control: str, key: str, expected: str) -> ValueError:
    return ValueError(f"Region {result.get('id')!r} of {control!r}: invalid 'value.{key}'; expected {expected}.")


def _parse_selections(result: dict[str, Any], control: str) -> dict[Selection, str]:
    """Return {selection: label} for one result."""
    result_type = result["type"]
    raw = _value_field(result, control, result_type if result_type != "pairwise" else "selected")
    if result_type in ("choices", "taxonomy"):
        return _parse_paths(result, control, raw, allow_strings=result_type == "choices")
    if result_type == "pairwise":
        if not isinstance(raw, str):
            raise _invalid(result, control, "selected", "a string such as 'left' or 'right'")
        return {(raw,): raw}
    if result_type == "datetime":
        if not isinstance(raw, str):
            raise _invalid(result, control, "datetime", "an ISO 8601 string")
        return {(_normalize_datetime(raw),): control}
    return _parse_ranker(result, control, raw)


def _parse_paths(result: dict[str, Any], control: str, raw: Any, allow_strings: bool) -> dict[Selection, str]:
    key = result["type"]
    expected = "a list of strings or of string lists" if allow_strings else "a list of string lists"
    if not isinstance(raw, list):
        raise _invalid(result, control, key, expected)
    paths: dict[Selection, str] = {}
    for entry in raw:
        if allow_strings and isinstance(entry, str):
            path: Selection = (entry,)
        elif isinstance(entry, list) and entry and all(isinstance(part, str) for part in entry):
            path = tuple(entry)
        else:
            raise _invalid(result, control, key, expected)
        paths[path] = " / ".join(path)
    return paths


def _parse_ranker(result: dict[str, Any], control: str, raw: Any) -> dict[Selection, str]:
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return {(str(position), item): item for position, item in enumerate(raw)}
    if isinstance(raw, dict) and all(
        isinstance(items, list) and all(isinstance(item, str) for item in items) for items in raw.values()
    ):
        return {(str(bucket), item): str(bucket) for bucket, items in raw.items() for item in items}
    raise _invalid(result, control, "ranker", "a list of item ids or an object of bucket -> list of item ids")


def _normalize_datetime(text: str) -> str:
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        # Label Studio also stores date-only or time-only values in custom formats; compare them as text.
        return text.strip()


def _score_control(side_1: list[_Item], side_2: list[_Item]) -> float:
    weights = [[_score_items(item_1, item_2) for item_2 in side_2] for item_1 in side_1]
    matched = math.fsum(weights[i][j] for i, j in _max_weight_matching(weights))
    return 2 * matched / (len(side_1) + len(side_2))


def _score_items(item_1: _Item, item_2: _Item) -> float:
    """Return the weighted Jaccard index of two items' selections (1.0 when both are empty)."""
    if item_1.result_type != item_2.result_type:
        return 0.0
    keys_1 = sorted(item_1.selections)
    keys_2 = sorted(item_2.selections)
    if OPTIONS["selection_match"] == "exact":
        return 1.0 if keys_1 == keys_2 else 0.0
    label_weight = OPTIONS["label_weights"]
    weights_1 = [_weight(label_weight, item_1.selections[key], "label_weights") for key in keys_1]
    weights_2 = [_weight(label_weight, item_2.selections[key], "label_weights") for key in keys_2]
    partial = item_1.result_type == "taxonomy" and OPTIONS["taxonomy_partial_credit"] is True
    pair_weights = [
        [_credit(key_1, key_2, partial) * (weights_1[i] + weights_2[j]) / 2 for j, key_2 in enumerate(keys_2)]
        for i, key_1 in enumerate(keys_1)
    ]
    matched = math.fsum(pair_weights[i][j] for i, j in _max_weight_matching(pair_weights))
    total = math.fsum(weights_1) + math.fsum(weights_2) - matched
    return matched / total if total > 0 else 1.0


def _credit(path_1: Selection, path_2: Selection, partial: bool) -> float:
    if path_1 == path_2:
        return 1.0
    if not partial:
        return 0.0
    common = 0
    for part_1, part_2 in zip(path_1, path_2, strict=False):
        if part_1 != part_2:
            break
        common += 1
    return common / max(len(path_1), len(path_2))


def _score_labels(side_1: list[_Item], side_2: list[_Item]) -> dict[str, float]:
    """Score each label of one control: Dice over its selections, or its best partial credit when on one side only."""
    counts_1, paths_1 = _count_labels(side_1)
    counts_2, paths_2 = _count_labels(side_2)
    partial = OPTIONS["taxonomy_partial_credit"] is True
    scores: dict[str, float] = {}
    for label in set(counts_1) | set(counts_2):
        keys_1 = counts_1.get(label, {})
        keys_2 = counts_2.get(label, {})
        if keys_1 and keys_2:
            shared = sum(min(count, keys_2.get(key, 0)) for key, count in keys_1.items())
            scores[label] = 2 * shared / (sum(keys_1.values()) + sum(keys_2.values()))
            continue
        own, other = (paths_1, paths_2) if keys_1 else (paths_2, paths_1)
        credits = [_credit(own[label], path, True) for path in other.values()] if partial and label in own else []
        scores[label] = max(credits, default=0.0)
    return scores


def _count_labels(items: list[_Item]) -> tuple[dict[str, dict[Selection, int]], dict[str, Selection]]:
    """Count each label's selections, and map taxonomy labels to their paths."""
    counts: dict[str, dict[Selection, int]] = {}
    taxonomy_paths: dict[str, Selection] = {}
    for item in items:
        for key, label in item.selections.items():
            per_key = counts.setdefault(label, {})
            per_key[key] = per_key.get(key, 0) + 1
            if item.result_type == "taxonomy":
                taxonomy_paths[label] = key
    return counts, taxonomy_paths


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
