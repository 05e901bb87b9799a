"""Tests for the numeric built-in (rating, number)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, corpus_files_with, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_metrics.errors import InvalidInputError

METRIC = load_builtin("number")


def item(result_type: str, number: Any, from_name: str = "score", region_id: str = "r1") -> dict[str, Any]:
    return {
        "id": region_id,
        "from_name": from_name,
        "to_name": "t",
        "type": result_type,
        "value": {result_type: number},
    }


def annotation(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


def test_empty_annotations_score_one() -> None:
    assert METRIC.agreement({}, {"result": []}) == 1.0


def test_empty_against_nonempty_scores_zero() -> None:
    assert METRIC.agreement(annotation(item("rating", 3)), {}) == 0.0
    assert METRIC.agreement({}, annotation(item("rating", 3)), per_label=True) == {"score": 0.0}


def test_rating_scaled_by_max() -> None:
    assert METRIC.agreement(annotation(item("rating", 2)), annotation(item("rating", 5))) == pytest.approx(0.25)
    ten = load_builtin("rating", {"rating_max": 10})
    assert ten.agreement(annotation(item("rating", 1)), annotation(item("rating", 10))) == 0.0


def test_number_exact_by_default() -> None:
    assert METRIC.agreement(annotation(item("number", 2)), annotation(item("number", 2.0))) == 1.0
    assert METRIC.agreement(annotation(item("number", 2)), annotation(item("number", 3))) == 0.0


def test_number_range_option() -> None:
    metric = load_builtin("number", {"number_range": 10})
    assert metric.agreement(annotation(item("number", 2)), annotation(item("number", 5))) == pytest.approx(0.7)
    assert metric.agreement(annotation(item("number", 2)), annotation(item("number", 50))) == 0.0


def test_number_tolerance_per_control() -> None:
    metric = load_builtin("number", {"number_tolerance": {"score": 1}})
    assert metric.agreement(annotation(item("number", 2)), annotation(item("number", 3))) == 1.0
    assert metric.agreement(annotation(item("number", 2)), annotation(item("number", 3.5))) == 0.0
    other = annotation(item("number", 2, from_name="other"))
    assert metric.agreement(other, annotation(item("number", 3, from_name="other"))) == 0.0


def test_controls_weighted_and_per_label_by_control() -> None:
    one = annotation(item("number", 1), item("rating", 5, from_name="stars"))
    two = annotation(item("number", 2), item("rating", 5, from_name="stars"))
    assert METRIC.agreement(one, two) == 0.5
    assert METRIC.agreement(one, two, per_label=True) == {"score": 0.0, "stars": 1.0}
    assert load_builtin("number", {"control_weights": {"stars": 3}}).agreement(one, two) == 0.75
    assert load_builtin("number", {"label_weights": {"score": 0}}).agreement(one, two) == 1.0


def test_per_region_numbers_pair_one_to_one() -> None:
    one = annotation(item("number", 1, region_id="a"), item("number", 7, region_id="b"))
    two = annotation(item("number", 7, region_id="c"))
    assert METRIC.agreement(one, two) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [None, "3", True, float("nan")])
def test_malformed_number_names_region(bad: Any) -> None:
    with pytest.raises(ValueError, match="'r1' of 'score'"):
        METRIC.agreement(annotation(item("number", bad)), {})


def test_invalid_rating_max_raises() -> None:
    with pytest.raises(InvalidInputError, match="rating_max"):
        load_builtin("rating", {"rating_max": 1})


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    results = []
    for index in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["rating", "number"]))
        results.append(item(kind, draw(st.integers(1, 5)), draw(st.sampled_from(["a", "b"])), str(index)))
    return {"result": results}


@settings(max_examples=50, deadline=None)
@given(one=annotations(), two=annotations())
def test_agreement_symmetric(one: dict[str, Any], two: dict[str, Any]) -> None:
    metric = load_builtin("number", {"number_range": 3})
    assert metric.agreement(one, two) == pytest.approx(metric.agreement(two, one), abs=1e-12)
    assert metric.agreement(one, two, per_label=True) == pytest.approx(
        metric.agreement(two, one, per_label=True), abs=1e-12
    )


def test_corpus_number_file_self_one() -> None:
    files = corpus_files_with("number")
    assert files
    for file_name in files:
        for annotations_of_task in corpus_annotation_sets(file_name):
            for one in annotations_of_task:
                assert METRIC.agreement(one, one) == 1.0
            for one, two in itertools.combinations(annotations_of_task, 2):
                assert 0.0 <= METRIC.agreement(one, two) <= 1.0
