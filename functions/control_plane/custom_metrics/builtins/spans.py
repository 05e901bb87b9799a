"""Span agreement for labels, hypertextlabels, paragraphlabels, timeserieslabels and timelinelabels.

A region with several labels counts as one region per label, and a region with an empty label
list is skipped. Text and audio use `start`/`end` (plus audio `channel`). HTML uses
`globalOffsets`, else the xpath `start`/`end` with `startOffset`/`endOffset`: overlap is then
measured only inside one shared node, and regions that span nodes must be identical. Timeseries
use `start`/`end` (an instant region is a point), timeline regions their inclusive frame `ranges`,
and paragraphs are measured in characters when both regions lie in the same single paragraph, and in
whole paragraphs otherwise, because paragraph lengths are not in the annotation. `labels` results
with image geometry instead of `start` are skipped (the image built-ins score them).
Within one control (`from_name`) and one label, regions pair one to one by Hungarian matching.
The score (`"span_score": "overlap"`, default) maximizes the sum of the paired regions' IoU and is
2 * (sum of paired IoU) / (regions in annotation_1 + regions in annotation_2). With
`"span_score": "f1"` the matching maximizes the number of pairs with IoU >= `iou_threshold`, and
the score is their F1 = 2 * pairs / (regions in annotation_1 + regions in annotation_2).
Unmatched regions count against both. A control's score sums those terms over labels weighted by
`label_weights`; the task score is the mean of the control scores weighted by `control_weights`.
Other result types are ignored. When neither annotation has a span result the score is 1.0.
per_label=True returns {label: score}; one label used by several controls gets the weighted mean.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "span_score": "overlap",
    "iou_threshold": 0.5,
}

RESULT_TYPES = ("labels", "hypertextlabels", "paragraphlabels", "timeserieslabels", "timelinelabels")

# An anchor names the coordinate system of the intervals: two spans overlap only under equal anchors.
Extent = tuple[tuple[Any, ...], tuple[tuple[float, float], ...]]
_IMAGE_KEYS = ("x", "points", "rle", "format")


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
    span_score = options.get("span_score")
    if span_score not in ("overlap", "f1"):
        raise OptionError("span_score", span_score, "'overlap' or 'f1'")
    threshold = options.get("iou_threshold")
    if not _is_number(threshold) or not 0 < threshold <= 1:
        raise OptionError("iou_threshold", threshold, "a number in (0, 1]")


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


class _Span:
    """One labelled region: its fine extent (e.g. characters) and, for paragraphs, a coarse one."""

    def __init__(self, fine: Extent | None, coarse: Extent | None = None) -> None:
        self.fine = fine
        self.coarse = coarse


def agreement(
    annotation_1: dict[str, Any], annotation_2: dict[str, Any], per_label: bool = False
) -> float | dict[str, float]:
    """Score the agreement of two annotations on their span results."""
    spans_1 = _collect_spans(annotation_1)
    spans_2 = _collect_spans(annotation_2)
    control_scores: list[tuple[float, float]] = []
    label_scores: dict[str, list[tuple[float, float]]] = {}
    for control in sorted(set(spans_1) | set(spans_2)):
        weight = _weight(OPTIONS["control_weights"], control, "control_weights")
        if weight == 0:
            continue
        matched_total = 0.0
        region_total = 0.0
        by_label_1 = spans_1.get(control, {})
        by_label_2 = spans_2.get(control, {})
        for label in sorted(set(by_label_1) | set(by_label_2)):
            label_weight = _weight(OPTIONS["label_weights"], label, "label_weights")
            if label_weight == 0:
                continue
            side_1 = by_label_1.get(label, [])
            side_2 = by_label_2.get(label, [])
            matched = _match_spans(side_1, side_2)
            matched_total += label_weight * matched
            region_total += label_weight * (len(side_1) + len(side_2))
            label_scores.setdefault(label, []).append((weight, 2 * matched / (len(side_1) + len(side_2))))
        if region_total > 0:
            control_scores.append((weight, 2 * matched_total / region_total))
    if per_label:
        return {label: _weighted_mean(scores) for label, scores in sorted(label_scores.items())}
    return _weighted_mean(control_scores) if control_scores else 1.0


def _collect_spans(annotation: dict[str, Any]) -> dict[str, dict[str, list[_Span]]]:
    """Group spans by from_name and label."""
    spans: dict[str, dict[str, list[_Span]]] = {}
    for result in _results(annotation):
        result_type = result["type"]
        if result_type not in RESULT_TYPES:
            continue
        control = _control_name(result)
        value = result.get("value")
        if not isinstance(value, dict):
            raise ValueError(f"Region {result.get('id')!r} of {control!r}: missing 'value' object.")
        if result_type == "labels" and "start" not in value and any(key in value for key in _IMAGE_KEYS):
            continue
        labels = value.get(result_type)
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise _invalid(result, control, result_type, "a list of label strings")
        span = _parse_span(result, control, value)
        for label in labels:
            spans.setdefault(control, {}).setdefault(label, []).append(span)
    return spans


def _invalid(result: dict[str, Any], control: str, key: str, expected: str) -> ValueError:
    region = result.get("id")
    return ValueError(f"Region {region!r} of {control!r}: missing or invalid 'value.{key}'; expected {expected}.")


def _parse_span(result: dict[str, Any], control: str, value: dict[str, Any]) -> _Span:
    result_type = result["type"]
    if result_type == "timelinelabels":
        ranges = value.get("ranges")
        if not isinstance(ranges, list) or not all(isinstance(item, dict) for item in ranges):
            raise _invalid(result, control, "ranges", "a list of {start, end} frame objects")
        frames = [_interval(result, control, item, "start", "end") for item in ranges]
        return _Span(((), tuple((start, end + 1) for start, end in frames)))
    if result_type == "paragraphlabels":
        return _parse_paragraph_span(result, control, value)
    if result_type == "hypertextlabels":
        offsets = value.get("globalOffsets")
        if isinstance(offsets, dict):
            return _Span(((), (_interval(result, control, offsets, "start", "end"),)))
        return _parse_xpath_span(result, control, value)
    start, end = _interval(result, control, value, "start", "end", instant=value.get("instant") is True)
    anchor = ("channel", value["channel"]) if result_type == "labels" and "channel" in value else ()
    return _Span((anchor, ((start, end),)))


def _parse_paragraph_span(result: dict[str, Any], control: str, value: dict[str, Any]) -> _Span:
    first, last = _interval(result, control, value, "start", "end")
    coarse: Extent = (("paragraphs",), ((first, last + 1),))
    if first != last:
        return _Span(None, coarse)
    characters = _interval(result, control, value, "startOffset", "endOffset")
    return _Span((("paragraph", first), (characters,)), coarse)


def _parse_xpath_span(result: dict[str, Any], control: str, value: dict[str, Any]) -> _Span:
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        raise _invalid(result, control, "start", "xpath strings in 'start' and 'end', or 'globalOffsets'")
    offsets = _interval(result, control, value, "startOffset", "endOffset", ordered=start == end)
    if start == end:
        return _Span((("xpath", start), (offsets,)))
    return _Span((("xpath range", start, offsets[0], end, offsets[1]), ((0.0, 1.0),)))


def _interval(
    result: dict[str, Any],
    control: str,
    source: dict[str, Any],
    start_key: str,
    end_key: str,
    instant: bool = False,
    ordered: bool = True,
) -> tuple[float, float]:
    """Read a numeric (start, end) pair; numeric strings such as paragraph indexes are accepted."""
    start = _number(source.get(start_key))
    end = start if instant and end_key not in source else _number(source.get(end_key))
    if start is None or end is None or (ordered and end < start):
        raise ValueError(
            f"Region {result.get('id')!r} of {control!r}: missing or invalid '{start_key}'/'{end_key}'; "
            f"expected two finite numbers with start <= end, got {source.get(start_key)!r}, {source.get(end_key)!r}."
        )
    return start, end


def _number(raw: Any) -> float | None:
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw)


def _match_spans(side_1: list[_Span], side_2: list[_Span]) -> float:
    """Return the matched mass: the sum of paired IoU (overlap) or the number of pairs at the threshold (f1)."""
    weights = [[span_iou(span_1, span_2) for span_2 in side_2] for span_1 in side_1]
    if OPTIONS["span_score"] == "f1":
        threshold = OPTIONS["iou_threshold"]
        weights = [[1.0 if iou >= threshold else 0.0 for iou in row] for row in weights]
    return math.fsum(weights[i][j] for i, j in _max_weight_matching(weights))


def span_iou(span_1: _Span, span_2: _Span) -> float:
    """Return the IoU of two spans, on the fine extents when their anchors agree, else on the coarse ones."""
    if span_1.fine is not None and span_2.fine is not None and span_1.fine[0] == span_2.fine[0]:
        return _extent_iou(span_1.fine[1], span_2.fine[1])
    if span_1.coarse is not None and span_2.coarse is not None and span_1.coarse[0] == span_2.coarse[0]:
        return _extent_iou(span_1.coarse[1], span_2.coarse[1])
    return 0.0


def _extent_iou(intervals_1: tuple[tuple[float, float], ...], intervals_2: tuple[tuple[float, float], ...]) -> float:
    merged_1 = _merge(intervals_1)
    merged_2 = _merge(intervals_2)
    length_1 = math.fsum(end - start for start, end in merged_1)
    length_2 = math.fsum(end - start for start, end in merged_2)
    if length_1 == 0 and length_2 == 0:
        # Points (instant regions) agree only when they sit at the same positions.
        return 1.0 if merged_1 == merged_2 else 0.0
    intersection = math.fsum(
        max(0.0, min(end_1, end_2) - max(start_1, start_2))
        for start_1, end_1 in merged_1
        for start_2, end_2 in merged_2
    )
    return intersection / (length_1 + length_2 - intersection)


def _merge(intervals: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


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
