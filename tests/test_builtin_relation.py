"""Tests for the relation built-in (relations compared through their endpoint regions)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, corpus_files_with, load_builtin

METRIC = load_builtin("relation")


def box(region_id: str, x: float, label: str = "Car") -> dict[str, Any]:
    value = {"x": x, "y": 10, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": [label]}
    return {"id": region_id, "from_name": "box", "to_name": "img", "type": "rectanglelabels", "value": value}


def relation(source: str, target: str, direction: str = "right", labels: list[str] | None = None) -> dict[str, Any]:
    found = {"from_id": source, "to_id": target, "type": "relation", "direction": direction}
    if labels is not None:
        found["labels"] = labels
    return found


def annotation(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


BASE_1 = (box("a", 0), box("b", 50, "Person"))
BASE_2 = (box("x", 1), box("y", 50, "Person"))


def test_empty_annotations_score_one() -> None:
    assert METRIC.agreement({}, {"result": []}) == 1.0
    assert METRIC.agreement(annotation(*BASE_1), annotation(*BASE_2)) == 1.0


def test_empty_against_nonempty_scores_zero() -> None:
    assert METRIC.agreement(annotation(*BASE_1, relation("a", "b")), annotation(*BASE_2)) == 0.0


def test_endpoints_matched_by_region_not_id() -> None:
    one = annotation(*BASE_1, relation("a", "b"))
    assert METRIC.agreement(one, annotation(*BASE_2, relation("x", "y"))) == 1.0
    assert METRIC.agreement(one, annotation(*BASE_2, relation("y", "x"))) == 0.0
    assert METRIC.agreement(one, annotation(*BASE_2, relation("y", "x", "left"))) == 1.0


def test_bidirectional_matches_either_order() -> None:
    one = annotation(*BASE_1, relation("a", "b", "bi"))
    assert METRIC.agreement(one, annotation(*BASE_2, relation("y", "x", "bi"))) == 1.0
    assert METRIC.agreement(one, annotation(*BASE_2, relation("x", "y"))) == 0.0


def test_endpoint_position_threshold() -> None:
    one = annotation(*BASE_1, relation("a", "b"))
    far = annotation(box("x", 6), box("y", 50, "Person"), relation("x", "y"))
    # Boxes [0, 10] and [6, 16]: IoU 4 / 16, below 0.5 but above 0.2.
    assert METRIC.agreement(one, far) == 0.0
    assert load_builtin("relation", {"endpoint_iou_threshold": 0.2}).agreement(one, far) == 1.0


def test_endpoint_labels_must_agree() -> None:
    one = annotation(*BASE_1, relation("a", "b"))
    two = annotation(box("x", 0, "Bus"), box("y", 50, "Person"), relation("x", "y"))
    assert METRIC.agreement(one, two) == 0.0


def test_relation_labels_and_per_label() -> None:
    one = annotation(*BASE_1, relation("a", "b", labels=["drives"]), relation("b", "a"))
    two = annotation(*BASE_2, relation("x", "y", labels=["drives"]))
    assert METRIC.agreement(one, two) == pytest.approx(2 / 3)
    assert METRIC.agreement(one, two, per_label=True) == {"drives": 1.0, "relation": 0.0}
    assert load_builtin("relation", {"label_weights": {"relation": 0}}).agreement(one, two) == 1.0
    assert load_builtin("relation", {"control_weights": {"relation": 0}}).agreement(one, two) == 1.0


def test_span_endpoints() -> None:
    def span(region_id: str, start: int) -> dict[str, Any]:
        value = {"start": start, "end": start + 10, "labels": ["PER"]}
        return {"id": region_id, "from_name": "ner", "to_name": "text", "type": "labels", "value": value}

    one = annotation(span("a", 0), span("b", 20), relation("a", "b"))
    two = annotation(span("c", 1), span("d", 20), relation("c", "d"))
    assert METRIC.agreement(one, two) == 1.0


def test_missing_endpoint_names_relation() -> None:
    with pytest.raises(ValueError, match="'a' -> 'zzz'"):
        METRIC.agreement(annotation(*BASE_1, relation("a", "zzz")), {})


def test_invalid_direction_raises() -> None:
    with pytest.raises(ValueError, match="direction 'up'"):
        METRIC.agreement(annotation(*BASE_1, relation("a", "b", "up")), {})


def test_symmetric_on_mixed_cases() -> None:
    cases = [
        annotation(*BASE_1, relation("a", "b"), relation("b", "a", "bi")),
        annotation(*BASE_2, relation("x", "y"), relation("x", "y", labels=["l"])),
        annotation(*BASE_2, relation("y", "x", "left"), relation("x", "y", "bi")),
        annotation(*BASE_1),
    ]
    for one, two in itertools.product(cases, repeat=2):
        assert METRIC.agreement(one, two) == pytest.approx(METRIC.agreement(two, one), abs=1e-12)
        assert METRIC.agreement(one, two, per_label=True) == METRIC.agreement(two, one, per_label=True)


@pytest.mark.parametrize("file_name", corpus_files_with("relation"))
def test_corpus_relations_self_one(file_name: str) -> None:
    for annotations_of_task in corpus_annotation_sets(file_name):
        for one in annotations_of_task:
            assert METRIC.agreement(one, one) == 1.0
        for one, two in itertools.combinations(annotations_of_task, 2):
            assert 0.0 <= METRIC.agreement(one, two) <= 1.0
