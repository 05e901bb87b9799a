"""Relation agreement: relations between regions, compared through their endpoint regions.

Region ids differ between two annotators, so a relation's endpoints are compared by the regions
they point to: two endpoints match when their regions have the same `to_name`, the same label set
(every `value.*labels` list of the results sharing the region id), and positions that agree:
spans (`start`/`end` numbers, or HTML `globalOffsets`) and image shapes (bounding box of a
rectangle, polygon or ellipse, or a square of half-side `keypoint_radius` percent around a
keypoint) need IoU >= `endpoint_iou_threshold`; any other region needs an identical value.
Two relations match when their labels and direction agree and both endpoints match. A "left"
relation is read as "right" with the endpoints swapped, and "bi" matches in either order.
Relations pair one to one per relation label by Hungarian matching on that 0/1 match, and the
score is 2 * pairs / (relations in annotation_1 + relations in annotation_2), so unmatched
relations count against it. Relations have no `from_name`, so they form one control named
"relation" in `control_weights`; `label_weights` are keyed by relation label ("relation" for a
relation without labels). Other result types only serve as endpoints. When neither annotation has
a relation the score is 1.0. per_label=True returns {relation label: score}.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "endpoint_iou_threshold": 0.5,
    "keypoint_radius": 1.0,
}

CONTROL = "relation"
UNLABELED = "relation"


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
    threshold = options.get("endpoint_iou_threshold")
    if not _is_number(threshold) or not 0 < threshold <= 1:
        raise OptionError("endpoint_iou_threshold", threshold, "a number in (0, 1]")
    radius = options.get("keypoint_radius")
    if not _is_number(radius) or radius < 0:
        raise OptionError("keypoint_radius", radius, "a finite number >= 0 (percent of the image size)")


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

# (kind, coordinates): kind "interval" (start, end), "box" (x0, y0, x1, y1) or "value" (canonical JSON).
Position = tuple[str, tuple[Any, ...]]
Endpoint = tuple[Any, frozenset[str], Position]


class _Relation:
    """A relation with resolved endpoints, normalized so that direction is "right" or "bi"."""

    def __init__(self, source: Endpoint, target: Endpoint, bidirectional: bool) -> None:
        self.source = source
        self.target = target
        self.bidirectional = bidirectional


def agreement(
    annotation_1: dict[str, Any], annotation_2: dict[str, Any], per_label: bool = False
) -> float | dict[str, float]:
    """Score the agreement of two annotations on their relations."""
    relations_1 = _collect_relations(annotation_1)
    relations_2 = _collect_relations(annotation_2)
    weight = _weight(OPTIONS["control_weights"], CONTROL, "control_weights")
    label_scores: dict[str, float] = {}
    matched_total = 0.0
    relation_total = 0.0
    for label in sorted(set(relations_1) | set(relations_2)):
        label_weight = _weight(OPTIONS["label_weights"], label, "label_weights")
        side_1 = relations_1.get(label, [])
        side_2 = relations_2.get(label, [])
        if label_weight == 0 or weight == 0:
            continue
        matches = [[1.0 if _relations_match(one, two) else 0.0 for two in side_2] for one in side_1]
        matched = math.fsum(matches[i][j] for i, j in _max_weight_matching(matches))
        matched_total += label_weight * matched
        relation_total += label_weight * (len(side_1) + len(side_2))
        label_scores[label] = 2 * matched / (len(side_1) + len(side_2))
    if per_label:
        return label_scores
    return 2 * matched_total / relation_total if relation_total > 0 else 1.0


def _collect_relations(annotation: dict[str, Any]) -> dict[str, list[_Relation]]:
    """Group the relations of an annotation by label, with endpoints resolved to region descriptions."""
    results = _results(annotation)
    regions: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if result["type"] != "relation" and isinstance(result.get("id"), str):
            regions.setdefault(result["id"], []).append(result)
    relations: dict[str, list[_Relation]] = {}
    for index, result in enumerate(results):
        if result["type"] != "relation":
            continue
        name = f"relation {result.get('from_id')!r} -> {result.get('to_id')!r} (result {index})"
        direction = result.get("direction", "right")
        if direction not in ("right", "left", "bi"):
            raise ValueError(f"Invalid {name}: direction {direction!r}; expected 'right', 'left' or 'bi'.")
        labels = result.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"Invalid {name}: 'labels' must be a list of strings.")
        source = _endpoint(regions, result.get("from_id"), name)
        target = _endpoint(regions, result.get("to_id"), name)
        if direction == "left":
            source, target = target, source
        key = ", ".join(sorted(labels)) or UNLABELED
        relations.setdefault(key, []).append(_Relation(source, target, direction == "bi"))
    return relations


def _endpoint(regions: dict[str, list[dict[str, Any]]], region_id: Any, name: str) -> Endpoint:
    if not isinstance(region_id, str) or region_id not in regions:
        raise ValueError(f"Invalid {name}: no region with id {region_id!r} in the same annotation.")
    parts = regions[region_id]
    labels: set[str] = set()
    position: Position | None = None
    for part in parts:
        value = part.get("value")
        if not isinstance(value, dict):
            raise ValueError(f"Region {region_id!r} of {part.get('from_name')!r}: missing 'value' object.")
        for key, item in value.items():
            if key.endswith("labels") and isinstance(item, list):
                labels.update(str(label) for label in item)
        position = position or _position(value, region_id)
    if position is None:
        value_text = json.dumps([part.get("value") for part in parts], sort_keys=True, default=str)
        position = ("value", (value_text,))
    return parts[0].get("to_name"), frozenset(labels), position


def _position(value: dict[str, Any], region_id: str) -> Position | None:
    """Return the region's interval or bounding box, or None when it has neither."""
    offsets = value.get("globalOffsets")
    if isinstance(offsets, dict):
        value = offsets
    if _is_number(value.get("start")) and _is_number(value.get("end")):
        return "interval", (float(value["start"]), float(value["end"]))
    if isinstance(value.get("points"), list):
        try:
            xs = [float(point[0]) for point in value["points"]]
            ys = [float(point[1]) for point in value["points"]]
        except (TypeError, ValueError, IndexError) as error:
            raise ValueError(f"Region {region_id!r}: invalid 'value.points'; expected [x, y] pairs.") from error
        return ("box", (min(xs), min(ys), max(xs), max(ys))) if xs else None
    if not (_is_number(value.get("x")) and _is_number(value.get("y"))):
        return None
    x, y = float(value["x"]), float(value["y"])
    if _is_number(value.get("radiusX")) and _is_number(value.get("radiusY")):
        radius_x, radius_y = float(value["radiusX"]), float(value["radiusY"])
        return "box", (x - radius_x, y - radius_y, x + radius_x, y + radius_y)
    if _is_number(value.get("width")) and _is_number(value.get("height")):
        # NOTE: rotation is ignored; a rotated rectangle is compared by its unrotated box.
        return "box", (x, y, x + float(value["width"]), y + float(value["height"]))
    radius = float(OPTIONS["keypoint_radius"])
    return "box", (x - radius, y - radius, x + radius, y + radius)


def _relations_match(relation_1: _Relation, relation_2: _Relation) -> bool:
    if relation_1.bidirectional != relation_2.bidirectional:
        return False
    if _endpoints_match(relation_1.source, relation_2.source) and _endpoints_match(
        relation_1.target, relation_2.target
    ):
        return True
    return (
        relation_1.bidirectional
        and _endpoints_match(relation_1.source, relation_2.target)
        and _endpoints_match(relation_1.target, relation_2.source)
    )


def _endpoints_match(endpoint_1: Endpoint, endpoint_2: Endpoint) -> bool:
    (object_1, labels_1, (kind_1, coordinates_1)) = endpoint_1
    (object_2, labels_2, (kind_2, coordinates_2)) = endpoint_2
    if object_1 != object_2 or labels_1 != labels_2 or kind_1 != kind_2:
        return False
    if kind_1 == "value":
        return bool(coordinates_1 == coordinates_2)
    return position_iou(kind_1, coordinates_1, coordinates_2) >= float(OPTIONS["endpoint_iou_threshold"])


def position_iou(kind: str, coordinates_1: tuple[Any, ...], coordinates_2: tuple[Any, ...]) -> float:
    """Return the IoU of two intervals (start, end) or two axis-aligned boxes (x0, y0, x1, y1)."""
    if coordinates_1 == coordinates_2:
        return 1.0
    dimensions = 1 if kind == "interval" else 2
    intersection = 1.0
    size_1 = 1.0
    size_2 = 1.0
    for axis in range(dimensions):
        low_1, high_1 = coordinates_1[axis], coordinates_1[axis + dimensions]
        low_2, high_2 = coordinates_2[axis], coordinates_2[axis + dimensions]
        intersection *= max(0.0, min(high_1, high_2) - max(low_1, low_2))
        size_1 *= high_1 - low_1
        size_2 *= high_2 - low_2
    union = size_1 + size_2 - intersection
    return intersection / union if union > 0 else 0.0


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
