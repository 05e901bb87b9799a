"""Tests for the span built-in (labels, hypertextlabels, paragraphlabels, timeserieslabels, timelinelabels)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, corpus_files_with, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_metrics.errors import InvalidInputError

METRIC = load_builtin("labels")
SPAN_TYPES = ("labels", "hypertextlabels", "paragraphlabels", "timeserieslabels", "timelinelabels")


def span(start: float, end: float, label: str = "PER", from_name: str = "ner", region_id: str = "r1") -> dict[str, Any]:
    value = {"start": start, "end": end, "labels": [label]}
    return {"id": region_id, "from_name": from_name, "to_name": "text", "type": "labels", "value": value}


def typed(result_type: str, value: dict[str, Any], region_id: str = "r1") -> dict[str, Any]:
    return {"id": region_id, "from_name": "ctl", "to_name": "obj", "type": result_type, "value": value}


def annotation(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


def test_empty_annotations_score_one() -> None:
    assert METRIC.agreement({}, {"result": []}) == 1.0


def test_empty_against_nonempty_scores_zero() -> None:
    assert METRIC.agreement(annotation(span(0, 4)), {}) == 0.0
    assert METRIC.agreement({}, annotation(span(0, 4)), per_label=True) == {"PER": 0.0}


def test_overlap_partial_span() -> None:
    # [0, 10) against [5, 15): IoU 5 / 15.
    assert METRIC.agreement(annotation(span(0, 10)), annotation(span(5, 15))) == pytest.approx(1 / 3)


def test_overlap_unmatched_region_counts_against() -> None:
    one = annotation(span(0, 10), span(20, 30, region_id="r2"))
    two = annotation(span(0, 10))
    assert METRIC.agreement(one, two) == pytest.approx(2 / 3)


def test_labels_must_agree() -> None:
    assert METRIC.agreement(annotation(span(0, 10, "PER")), annotation(span(0, 10, "ORG"))) == 0.0
    scores = METRIC.agreement(annotation(span(0, 10, "PER")), annotation(span(0, 10, "ORG")), per_label=True)
    assert scores == {"ORG": 0.0, "PER": 0.0}


def test_hungarian_beats_greedy() -> None:
    # Greedy by IoU would pair a=[0,10) with c=[2,10) (0.8) and leave b; optimal pairs a-d and b-c.
    one = annotation(span(0, 10, region_id="a"), span(2, 12, region_id="b"))
    two = annotation(span(2, 10, region_id="c"), span(0, 9, region_id="d"))
    expected = 2 * (0.9 + 0.8) / 4
    assert METRIC.agreement(one, two) == pytest.approx(expected)


def test_f1_mode_threshold() -> None:
    metric = load_builtin("labels", {"span_score": "f1", "iou_threshold": 0.5})
    one = annotation(span(0, 10), span(20, 30, region_id="r2"))
    two = annotation(span(0, 8), span(25, 40, region_id="r3"))
    # IoU 0.8 counts, IoU 5/20 does not: F1 = 2 * 1 / 4.
    assert metric.agreement(one, two) == 0.5


def test_multi_label_region_counts_per_label() -> None:
    both = {
        "id": "r",
        "from_name": "ner",
        "to_name": "t",
        "type": "labels",
        "value": {"start": 0, "end": 4, "labels": ["A", "B"]},
    }
    assert METRIC.agreement(annotation(both), annotation(span(0, 4, "A"))) == pytest.approx(2 / 3)


def test_label_and_control_weights() -> None:
    one = annotation(span(0, 10, "A"), span(20, 30, "B", region_id="r2"), span(0, 5, from_name="other"))
    two = annotation(span(0, 10, "A"), span(0, 5, from_name="other"))
    assert METRIC.agreement(one, two) == pytest.approx((2 / 3 + 1) / 2)
    no_b = load_builtin("labels", {"label_weights": {"B": 0}})
    assert no_b.agreement(one, two) == 1.0
    heavy_b = load_builtin("labels", {"label_weights": {"B": 2}, "control_weights": {"other": 0}})
    assert heavy_b.agreement(one, two) == pytest.approx(2 / 4)


def test_image_labels_result_ignored() -> None:
    image = typed("labels", {"x": 1, "y": 2, "width": 3, "height": 4, "labels": ["Moon"]})
    assert METRIC.agreement(annotation(image), {}) == 1.0


def test_audio_channels_do_not_overlap() -> None:
    left = typed("labels", {"start": 1.0, "end": 2.0, "channel": 0, "labels": ["Beat"]})
    right = typed("labels", {"start": 1.0, "end": 2.0, "channel": 1, "labels": ["Beat"]})
    assert METRIC.agreement(annotation(left), annotation(right)) == 0.0


def test_hypertext_global_offsets_and_xpath() -> None:
    one = typed(
        "hypertextlabels",
        {
            "start": "/p[1]",
            "end": "/p[2]",
            "startOffset": 3,
            "endOffset": 1,
            "globalOffsets": {"start": 10, "end": 20},
            "hypertextlabels": ["X"],
        },
    )
    two = typed(
        "hypertextlabels",
        {
            "start": "/p[1]",
            "end": "/p[1]",
            "startOffset": 0,
            "endOffset": 4,
            "globalOffsets": {"start": 15, "end": 20},
            "hypertextlabels": ["X"],
        },
    )
    assert METRIC.agreement(annotation(one), annotation(two)) == 0.5
    same_node_1 = typed(
        "hypertextlabels",
        {"start": "/p[1]", "end": "/p[1]", "startOffset": 0, "endOffset": 4, "hypertextlabels": ["X"]},
    )
    same_node_2 = typed(
        "hypertextlabels",
        {"start": "/p[1]", "end": "/p[1]", "startOffset": 2, "endOffset": 4, "hypertextlabels": ["X"]},
    )
    other_node = typed(
        "hypertextlabels",
        {"start": "/p[2]", "end": "/p[2]", "startOffset": 0, "endOffset": 4, "hypertextlabels": ["X"]},
    )
    assert METRIC.agreement(annotation(same_node_1), annotation(same_node_2)) == 0.5
    assert METRIC.agreement(annotation(same_node_1), annotation(other_node)) == 0.0


def test_paragraphs_characters_then_paragraphs() -> None:
    def paragraph(start: str, end: str, start_offset: int, end_offset: int) -> dict[str, Any]:
        value = {
            "start": start,
            "end": end,
            "startOffset": start_offset,
            "endOffset": end_offset,
            "paragraphlabels": ["P"],
        }
        return typed("paragraphlabels", value)

    assert METRIC.agreement(annotation(paragraph("2", "2", 0, 10)), annotation(paragraph("2", "2", 5, 10))) == 0.5
    # Paragraphs 2-4 against 3-4, in whole paragraphs: 2 / 3.
    assert METRIC.agreement(
        annotation(paragraph("2", "4", 0, 9)), annotation(paragraph("3", "4", 7, 1))
    ) == pytest.approx(2 / 3)
    assert METRIC.agreement(annotation(paragraph("2", "2", 0, 10)), annotation(paragraph("2", "3", 0, 1))) == 0.5


def test_timeseries_instant_points() -> None:
    point = typed("timeserieslabels", {"start": 5, "end": 5, "instant": True, "timeserieslabels": ["Peak"]})
    other = typed("timeserieslabels", {"start": 6, "end": 6, "instant": True, "timeserieslabels": ["Peak"]})
    assert METRIC.agreement(annotation(point), annotation(point)) == 1.0
    assert METRIC.agreement(annotation(point), annotation(other)) == 0.0


def test_timeline_inclusive_frame_ranges() -> None:
    one = typed("timelinelabels", {"ranges": [{"start": 1, "end": 10}], "timelinelabels": ["Car"]})
    two = typed(
        "timelinelabels", {"ranges": [{"start": 1, "end": 5}, {"start": 8, "end": 12}], "timelinelabels": ["Car"]}
    )
    # Frames 1-10 against 1-5 and 8-12: 8 shared of 12.
    assert METRIC.agreement(annotation(one), annotation(two)) == pytest.approx(8 / 12)


@pytest.mark.parametrize(
    ("value", "result_type", "fragment"),
    [
        ({"start": 0, "end": 4}, "labels", "'value.labels'"),
        ({"start": 5, "end": 4, "labels": ["A"]}, "labels", "start <= end"),
        ({"start": "a", "end": 4, "labels": ["A"]}, "labels", "'start'/'end'"),
        ({"ranges": "1-2", "timelinelabels": ["A"]}, "timelinelabels", "'value.ranges'"),
        ({"start": 1, "end": "/p", "hypertextlabels": ["A"]}, "hypertextlabels", "xpath"),
        ({"start": "1", "end": "1", "paragraphlabels": ["A"]}, "paragraphlabels", "'startOffset'/'endOffset'"),
    ],
)
def test_malformed_span_names_region(value: dict[str, Any], result_type: str, fragment: str) -> None:
    bad = typed(result_type, value, region_id="bad9")
    with pytest.raises(ValueError, match="bad9") as caught:
        METRIC.agreement(annotation(bad), {})
    assert fragment in str(caught.value)


def test_invalid_span_score_option_raises() -> None:
    with pytest.raises(InvalidInputError, match="span_score"):
        load_builtin("labels", {"span_score": "dice"})


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    results = []
    for index in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, 20))
        end = start + draw(st.integers(0, 8))
        results.append(
            span(start, end, draw(st.sampled_from(["A", "B"])), draw(st.sampled_from(["n1", "n2"])), str(index))
        )
    return {"result": results}


@settings(max_examples=50, deadline=None)
@given(one=annotations(), two=annotations(), mode=st.sampled_from(["overlap", "f1"]))
def test_agreement_symmetric(one: dict[str, Any], two: dict[str, Any], mode: str) -> None:
    metric = load_builtin("labels", {"span_score": mode})
    score = metric.agreement(one, two)
    assert score == pytest.approx(metric.agreement(two, one), abs=1e-12)
    assert 0.0 <= score <= 1.0
    per_label_1 = metric.agreement(one, two, per_label=True)
    per_label_2 = metric.agreement(two, one, per_label=True)
    assert per_label_1 == pytest.approx(per_label_2, abs=1e-12)


def test_corpus_covers_every_type() -> None:
    for result_type in SPAN_TYPES:
        assert corpus_files_with(result_type), result_type


@pytest.mark.parametrize("file_name", sorted({name for kind in SPAN_TYPES for name in corpus_files_with(kind)}))
def test_corpus_pairs_in_range_and_self_one(file_name: str) -> None:
    for annotations_of_task in corpus_annotation_sets(file_name):
        for one in annotations_of_task:
            assert METRIC.agreement(one, one) == 1.0
        for one, two in itertools.combinations(annotations_of_task, 2):
            score = METRIC.agreement(one, two)
            assert 0.0 <= score <= 1.0
            assert score == pytest.approx(METRIC.agreement(two, one), abs=1e-12)


def test_corpus_leoka_annotators_partly_agree() -> None:
    scores = [
        METRIC.agreement(one, two)
        for annotations_of_task in corpus_annotation_sets("labels_taxonomy_3annotators_leoka.json")
        for one, two in itertools.combinations(annotations_of_task, 2)
    ]
    assert 0.0 < sum(scores) / len(scores) < 1.0
