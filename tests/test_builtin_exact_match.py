"""Tests for the exact-match built-in (choices, taxonomy, pairwise, datetime, ranker)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, corpus_files_with, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_metrics.errors import InvalidInputError

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

METRIC = load_builtin("choices")


def result(from_name: str, result_type: str, value: dict[str, Any], region_id: str = "r1") -> dict[str, Any]:
    return {"id": region_id, "from_name": from_name, "to_name": "text", "type": result_type, "value": value}


def choices(*selected: Any, from_name: str = "sentiment", region_id: str = "r1") -> dict[str, Any]:
    return result(from_name, "choices", {"choices": list(selected)}, region_id)


def taxonomy(*paths: list[str], from_name: str = "tax") -> dict[str, Any]:
    return result(from_name, "taxonomy", {"taxonomy": list(paths)})


def annotation(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


def test_agreement_empty_annotations_score_one() -> None:
    assert METRIC.agreement({"result": []}, {}) == 1.0
    assert METRIC.agreement({}, {}, per_label=True) == {}


def test_agreement_empty_against_nonempty_scores_zero() -> None:
    assert METRIC.agreement(annotation(choices("A")), {"result": []}) == 0.0
    assert METRIC.agreement({}, annotation(choices("A")), per_label=True) == {"A": 0.0}


def test_agreement_other_types_only_scores_one() -> None:
    other = result("ner", "labels", {"start": 0, "end": 3, "labels": ["X"]})
    assert METRIC.agreement(annotation(other), {"result": []}) == 1.0


def test_choices_single_match_and_mismatch() -> None:
    assert METRIC.agreement(annotation(choices("A")), annotation(choices("A"))) == 1.0
    assert METRIC.agreement(annotation(choices("A")), annotation(choices("B"))) == 0.0


def test_choices_multiple_jaccard() -> None:
    score = METRIC.agreement(annotation(choices("A", "B", "C")), annotation(choices("A", "B")))
    assert score == pytest.approx(2 / 3)


def test_choices_multiple_exact_option() -> None:
    metric = load_builtin("choices", {"selection_match": "exact"})
    assert metric.agreement(annotation(choices("A", "B")), annotation(choices("B", "A"))) == 1.0
    assert metric.agreement(annotation(choices("A", "B")), annotation(choices("A"))) == 0.0


def test_choices_per_label_counts() -> None:
    scores = METRIC.agreement(annotation(choices("A", "B")), annotation(choices("A", "C")), per_label=True)
    assert scores == {"A": 1.0, "B": 0.0, "C": 0.0}


def test_choices_nested_keyed_by_path() -> None:
    one = annotation(choices(["Animal", "Cat"], ["Plant"]))
    two = annotation(choices(["Animal", "Dog"], ["Plant"]))
    assert METRIC.agreement(one, two) == pytest.approx(1 / 3)
    assert METRIC.agreement(one, two, per_label=True) == {"Animal / Cat": 0.0, "Animal / Dog": 0.0, "Plant": 1.0}


def test_controls_mean_and_weights() -> None:
    one = annotation(choices("A"), choices("X", from_name="topic"))
    two = annotation(choices("A"), choices("Y", from_name="topic"))
    assert METRIC.agreement(one, two) == 0.5
    weighted = load_builtin("choices", {"control_weights": {"sentiment": 3}})
    assert weighted.agreement(one, two) == 0.75
    ignored = load_builtin("choices", {"control_weights": {"topic": 0}})
    assert ignored.agreement(one, two) == 1.0


def test_label_weight_zero_leaves_label_out() -> None:
    metric = load_builtin("choices", {"label_weights": {"B": 0}})
    assert metric.agreement(annotation(choices("A", "B")), annotation(choices("A"))) == 1.0
    assert "B" not in metric.agreement(annotation(choices("A", "B")), annotation(choices("A")), per_label=True)
    assert metric.agreement(annotation(choices("B")), annotation(choices("B"))) == 1.0


def test_label_weights_weight_jaccard() -> None:
    metric = load_builtin("choices", {"label_weights": {"A": 3}})
    # matched A weighs 3; the total is 3 (A) + 1 (B) = 4.
    assert metric.agreement(annotation(choices("A", "B")), annotation(choices("A"))) == 0.75


def test_per_region_choices_pair_one_to_one() -> None:
    one = annotation(choices("A", region_id="1"), choices("B", region_id="2"))
    two = annotation(choices("B", region_id="9"))
    assert METRIC.agreement(one, two) == pytest.approx(2 / 3)


def test_taxonomy_full_path_exact() -> None:
    one = annotation(taxonomy(["A", "B"], ["C"]))
    two = annotation(taxonomy(["A", "D"], ["C"]))
    assert METRIC.agreement(one, two) == pytest.approx(1 / 3)
    assert METRIC.agreement(one, two, per_label=True) == {"A / B": 0.0, "A / D": 0.0, "C": 1.0}


def test_taxonomy_partial_credit_option() -> None:
    metric = load_builtin("taxonomy", {"taxonomy_partial_credit": True})
    one = annotation(taxonomy(["A", "B"], ["C"]))
    two = annotation(taxonomy(["A", "D"]))
    # A/B pairs with A/D for credit 1/2; Jaccard = 0.5 / (2 + 1 - 0.5).
    assert metric.agreement(one, two) == pytest.approx(0.2)
    assert metric.agreement(one, two, per_label=True) == {"A / B": 0.5, "A / D": 0.5, "C": 0.0}


def test_taxonomy_partial_credit_uneven_depth() -> None:
    metric = load_builtin("taxonomy", {"taxonomy_partial_credit": True})
    assert metric.agreement(annotation(taxonomy(["A"])), annotation(taxonomy(["A", "B", "C"]))) == pytest.approx(
        (1 / 3) / (2 - 1 / 3)
    )


def test_pairwise_selected() -> None:
    left = annotation(result("pw", "pairwise", {"selected": "left"}))
    right = annotation(result("pw", "pairwise", {"selected": "right"}))
    assert METRIC.agreement(left, left) == 1.0
    assert METRIC.agreement(left, right) == 0.0
    assert METRIC.agreement(left, right, per_label=True) == {"left": 0.0, "right": 0.0}


def test_datetime_compared_after_parsing() -> None:
    one = annotation(result("dt", "datetime", {"datetime": "1991-05-22T09:17"}))
    two = annotation(result("dt", "datetime", {"datetime": "1991-05-22T09:17:00"}))
    three = annotation(result("dt", "datetime", {"datetime": "1991-05-22T09:18"}))
    assert METRIC.agreement(one, two) == 1.0
    assert METRIC.agreement(one, three) == 0.0
    assert METRIC.agreement(one, three, per_label=True) == {"dt": 0.0}


def test_ranker_list_positions() -> None:
    one = annotation(result("rank", "ranker", {"ranker": ["a", "b", "c"]}))
    two = annotation(result("rank", "ranker", {"ranker": ["a", "c", "b"]}))
    # Only (0, a) is shared: 1 / (3 + 3 - 1).
    assert METRIC.agreement(one, two) == pytest.approx(0.2)
    assert METRIC.agreement(one, two, per_label=True) == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_ranker_buckets_by_bucket() -> None:
    one = annotation(result("rank", "ranker", {"ranker": {"best": ["x", "y"], "ads": ["z"]}}))
    two = annotation(result("rank", "ranker", {"ranker": {"best": ["x"], "ads": ["y", "z"]}}))
    assert METRIC.agreement(one, two) == pytest.approx(2 / 4)
    assert METRIC.agreement(one, two, per_label=True) == {"ads": pytest.approx(2 / 3), "best": pytest.approx(2 / 3)}


def test_types_in_one_control_never_match() -> None:
    one = annotation(result("c", "choices", {"choices": ["left"]}))
    two = annotation(result("c", "pairwise", {"selected": "left"}))
    assert METRIC.agreement(one, two) == 0.0


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (result("sentiment", "choices", {}, "reg7"), "missing 'value.choices'"),
        (result("sentiment", "choices", {"choices": "A"}, "reg7"), "invalid 'value.choices'"),
        (result("sentiment", "choices", {"choices": [["A", 3]]}, "reg7"), "invalid 'value.choices'"),
        (result("tax", "taxonomy", {"taxonomy": ["A"]}, "reg7"), "invalid 'value.taxonomy'"),
        (result("pw", "pairwise", {"selected": 1}, "reg7"), "invalid 'value.selected'"),
        (result("dt", "datetime", {"datetime": None}, "reg7"), "invalid 'value.datetime'"),
        (result("rank", "ranker", {"ranker": [1, 2]}, "reg7"), "invalid 'value.ranker'"),
        ({"id": "reg7", "type": "choices", "value": {"choices": ["A"]}}, "'from_name'"),
    ],
)
def test_malformed_result_names_region(bad: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match="reg7") as caught:
        METRIC.agreement(annotation(bad), annotation(choices("A")))
    assert fragment in str(caught.value)


def test_malformed_annotation_raises() -> None:
    with pytest.raises(ValueError, match="'result' must be a list"):
        METRIC.agreement({"result": {"a": 1}}, {})
    with pytest.raises(ValueError, match="string 'type'"):
        METRIC.agreement({"result": [{"id": "x"}]}, {})


def test_invalid_option_value_raises() -> None:
    with pytest.raises(InvalidInputError, match="control_weights"):
        load_builtin("choices", {"control_weights": {"sentiment": -1}})


def test_max_weight_matching_equals_brute_force() -> None:
    matrices = [
        [[0.5, 1.0, 0.0], [1.0, 0.9, 0.2]],
        [[0.3], [0.7], [0.1]],
        [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
        [[0.0, 0.0], [0.0, 0.0]],
        [[0.2, 0.8, 0.4, 0.1], [0.9, 0.3, 0.6, 0.5], [0.7, 0.6, 0.2, 0.9]],
    ]
    for weights in matrices:
        rows, columns = len(weights), len(weights[0])
        if rows <= columns:
            best = max(sum(weights[i][p[i]] for i in range(rows)) for p in itertools.permutations(range(columns), rows))
        else:
            best = max(
                sum(weights[p[j]][j] for j in range(columns)) for p in itertools.permutations(range(rows), columns)
            )
        pairs = METRIC._max_weight_matching(weights)
        assert sum(weights[i][j] for i, j in pairs) == pytest.approx(best)
        assert len({i for i, _ in pairs}) == len(pairs)
        assert len({j for _, j in pairs}) == len(pairs)


SELECTIONS = st.lists(st.sampled_from(["A", "B", "C", "D"]), max_size=3, unique=True)
PATHS = st.lists(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3), max_size=3)


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    results = []
    for index in range(draw(st.integers(0, 3))):
        from_name = draw(st.sampled_from(["c1", "c2"]))
        results.append(choices(*draw(SELECTIONS), from_name=from_name, region_id=str(index)))
    if draw(st.booleans()):
        results.append(taxonomy(*draw(PATHS)))
    return {"result": results}


@settings(max_examples=50, deadline=None)
@given(one=annotations(), two=annotations(), partial=st.booleans())
def test_agreement_symmetric(one: dict[str, Any], two: dict[str, Any], partial: bool) -> None:
    metric = load_builtin("choices", {"taxonomy_partial_credit": partial})
    score = metric.agreement(one, two)
    assert score == pytest.approx(metric.agreement(two, one), abs=1e-12)
    assert 0.0 <= score <= 1.0
    per_label_1 = metric.agreement(one, two, per_label=True)
    per_label_2 = metric.agreement(two, one, per_label=True)
    assert per_label_1.keys() == per_label_2.keys()
    for label, value in per_label_1.items():
        assert value == pytest.approx(per_label_2[label], abs=1e-12)


CORPUS_FILES = sorted(
    {*corpus_files_with("choices"), *corpus_files_with("taxonomy")}
    | {
        *corpus_files_with("pairwise"),
        *corpus_files_with("datetime"),
        *corpus_files_with("ranker"),
    }
)


def test_corpus_covers_every_type() -> None:
    for result_type in ("choices", "taxonomy", "pairwise", "datetime", "ranker"):
        assert corpus_files_with(result_type), result_type


@pytest.mark.parametrize("file_name", CORPUS_FILES)
def test_corpus_pairs_in_range_and_self_one(file_name: str) -> None:
    for annotations_of_task in corpus_annotation_sets(file_name):
        for one in annotations_of_task:
            assert METRIC.agreement(one, one) == 1.0
            assert all(value == 1.0 for value in METRIC.agreement(one, one, per_label=True).values())
        for one, two in itertools.combinations(annotations_of_task, 2):
            score = METRIC.agreement(one, two)
            assert 0.0 <= score <= 1.0
            assert score == pytest.approx(METRIC.agreement(two, one), abs=1e-12)


def test_corpus_leoka_taxonomy_differs_between_annotators() -> None:
    scores = [
        METRIC.agreement(one, two)
        for annotations_of_task in corpus_annotation_sets("labels_taxonomy_3annotators_leoka.json")
        for one, two in itertools.combinations(annotations_of_task, 2)
    ]
    assert len(scores) == 24
    assert min(scores) < 1.0
