"""Tests for the textarea built-in (normalized Levenshtein similarity)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, corpus_files_with, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st

METRIC = load_builtin("textarea")


def text(value: Any, from_name: str = "answer", region_id: str = "r1") -> dict[str, Any]:
    return {"id": region_id, "from_name": from_name, "to_name": "t", "type": "textarea", "value": {"text": value}}


def annotation(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


def test_empty_annotations_score_one() -> None:
    assert METRIC.agreement({}, {"result": []}) == 1.0


def test_empty_against_nonempty_scores_zero() -> None:
    assert METRIC.agreement(annotation(text("Mario")), {}) == 0.0


def test_edit_distance_normalized_by_longer() -> None:
    # kitten -> sitting: distance 3, longer length 7.
    assert METRIC.agreement(annotation(text("kitten")), annotation(text("sitting"))) == pytest.approx(4 / 7)


def test_lines_joined_and_whitespace_normalized() -> None:
    assert METRIC.agreement(annotation(text(["Hello", "World"])), annotation(text("Hello  World "))) == 1.0
    strict = load_builtin("textarea", {"normalize_whitespace": False})
    assert strict.agreement(annotation(text(["Hello", "World"])), annotation(text("Hello World"))) == pytest.approx(
        10 / 11
    )


def test_lowercase_option() -> None:
    assert METRIC.agreement(annotation(text("ABC")), annotation(text("abc"))) == 0.0
    assert (
        load_builtin("textarea", {"lowercase": True}).agreement(annotation(text("ABC")), annotation(text("abc"))) == 1.0
    )


def test_empty_texts_agree() -> None:
    assert METRIC.agreement(annotation(text("")), annotation(text([]))) == 1.0


def test_per_label_keyed_by_control() -> None:
    one = annotation(text("abcd"), text("x", from_name="note"))
    two = annotation(text("abce"), text("y", from_name="note"))
    assert METRIC.agreement(one, two, per_label=True) == {"answer": 0.75, "note": 0.0}
    assert load_builtin("textarea", {"control_weights": {"note": 0}}).agreement(one, two) == 0.75


@pytest.mark.parametrize("bad", [None, 3, ["a", 1]])
def test_malformed_text_names_region(bad: Any) -> None:
    with pytest.raises(ValueError, match="'r1' of 'answer'"):
        METRIC.agreement(annotation(text(bad)), {})


@settings(max_examples=50, deadline=None)
@given(one=st.text(max_size=12), two=st.text(max_size=12))
def test_fallback_matches_rapidfuzz(one: str, two: str) -> None:
    assert METRIC._RAPIDFUZZ_SIMILARITY is not None
    assert METRIC._levenshtein_similarity(one, two) == pytest.approx(METRIC.text_similarity(one, two), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    one=st.lists(st.text(alphabet="ab ", max_size=6), max_size=3),
    two=st.lists(st.text(alphabet="ab ", max_size=6), max_size=3),
)
def test_agreement_symmetric(one: list[str], two: list[str]) -> None:
    first = annotation(*(text(value, region_id=str(i)) for i, value in enumerate(one)))
    second = annotation(*(text(value, region_id=str(i)) for i, value in enumerate(two)))
    assert METRIC.agreement(first, second) == pytest.approx(METRIC.agreement(second, first), abs=1e-12)


@pytest.mark.parametrize("file_name", corpus_files_with("textarea"))
def test_corpus_pairs_in_range_and_self_one(file_name: str) -> None:
    for annotations_of_task in corpus_annotation_sets(file_name):
        for one in annotations_of_task:
            assert METRIC.agreement(one, one) == 1.0
        for one, two in itertools.combinations(annotations_of_task, 2):
            assert 0.0 <= METRIC.agreement(one, two) <= 1.0
