"""Statistics over Label Studio exports: rating extraction, degenerate cases and real corpus files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.errors import InvalidInputError
from custom_metrics.statistics import (
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
    project_statistics,
)

CORPUS = Path(__file__).parent / "data" / "corpus"
ONE_CATEGORY = "is null because every rating it reads is 'yes', so chance agreement is 1 and the statistic is 0/0"


def result(value: dict[str, Any], result_type: str = "choices", from_name: str = "label") -> dict[str, Any]:
    return {"from_name": from_name, "to_name": "text", "type": result_type, "value": value}


def annotation(user: Any, *results: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": fields.pop("id", None), "completed_by": user, "result": list(results), **fields}


def choice(label: str, from_name: str = "label") -> dict[str, Any]:
    return result({"choices": [label]}, from_name=from_name)


def tasks_from(rows: list[list[str | None]]) -> list[dict[str, Any]]:
    """One task per row; column c is user c+1's choice, None for no annotation."""
    return [
        {"id": number, "annotations": [annotation(user + 1, choice(label)) for user, label in enumerate(row) if label]}
        for number, row in enumerate(rows)
    ]


def only_control(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["controls"]) == 1
    control: dict[str, Any] = report["controls"][0]
    return control


# --- degenerate cases of the statistic functions -------------------------------------------------


def test_percent_agreement_single_ratings_is_none() -> None:
    statistic = percent_agreement([["a"], ["b"], []])

    assert statistic.value is None
    assert statistic.warnings == ("percent agreement is null because no item has two or more ratings",)


def test_percent_agreement_pairs_within_items() -> None:
    # Item 1 (a, a, b): 2 of 6 ordered pairs agree. Item 2: all agree. Item 3 has one rating and is left out.
    assert percent_agreement([["a", "a", "b"], ["c", "c"], ["d"]]).value == pytest.approx(2 / 3)


def test_cohen_kappa_no_overlap_is_none() -> None:
    statistic = cohen_kappa([], [])

    assert statistic.value is None
    assert statistic.warnings == ("Cohen's kappa is null because the two raters share no items",)


def test_cohen_kappa_one_category_is_none() -> None:
    statistic = cohen_kappa(["yes", "yes", "yes"], ["yes", "yes", "yes"])

    assert statistic.value is None
    assert statistic.warnings == ("Cohen's kappa " + ONE_CATEGORY,)


def test_cohen_kappa_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="got 2 and 1 ratings"):
        cohen_kappa(["a", "b"], ["a"])


def test_cohen_kappa_single_disagreement_is_zero() -> None:
    assert cohen_kappa(["a"], ["b"]).value == 0.0


def test_fleiss_kappa_single_ratings_is_none() -> None:
    statistic = fleiss_kappa([["a"], ["b"]])

    assert statistic.value is None
    assert statistic.warnings == ("Fleiss' kappa is null because no item has two or more ratings",)


def test_fleiss_kappa_one_category_is_none() -> None:
    statistic = fleiss_kappa([["yes", "yes"], ["yes", "yes"], ["no"]])

    assert statistic.value is None
    assert statistic.warnings == ("Fleiss' kappa " + ONE_CATEGORY,)


def test_krippendorff_alpha_no_pairable_is_none() -> None:
    statistic = krippendorff_alpha([[1.0], [], [2.0]], "interval")

    assert statistic.value is None
    assert statistic.warnings == ("Krippendorff's alpha is null because no item has two or more ratings",)


def test_krippendorff_alpha_one_pairable_value_is_none() -> None:
    # "no" occurs only on an item with one rating, so every pairable value is "yes".
    statistic = krippendorff_alpha([["yes", "yes"], ["yes", "yes", "yes"], ["no"]])

    assert statistic.value is None
    assert statistic.warnings == ("Krippendorff's alpha " + ONE_CATEGORY,)


def test_krippendorff_alpha_ordinal_text_raises() -> None:
    with pytest.raises(ValueError, match="needs numeric ratings, got 'high'"):
        krippendorff_alpha([["high", "low"]], "ordinal")


def test_krippendorff_alpha_perfect_agreement_is_one() -> None:
    assert krippendorff_alpha([[1.0, 1.0], [2.0, 2.0, 2.0], [3.0]], "ordinal").value == 1.0


# --- project_statistics: degenerate projects ---------------------------------------------------


def test_project_statistics_no_tasks() -> None:
    report = project_statistics([])

    assert report["controls"] == []
    assert report["warnings"] == [
        "no choices, taxonomy, rating, pairwise ratings were found in 0 tasks, so there are no statistics"
    ]


def test_project_statistics_one_rater_per_item() -> None:
    control = only_control(project_statistics(tasks_from([["a", None], [None, "b"], ["b", None]])))

    assert control["percent_agreement"] is None
    assert control["fleiss_kappa"] is None
    assert control["krippendorff_alpha"] == {"nominal": None, "ordinal": None, "interval": None}
    assert control["cohen_kappa"] == [{"first": "1", "second": "2", "kappa": None, "items": 0}]
    assert "items with a single rating, which enter no statistic: 3 of 3" in control["warnings"]
    assert "Cohen's kappa is null because the two raters share no items (1 and 2)" in control["warnings"]


def test_project_statistics_one_category() -> None:
    control = only_control(project_statistics(tasks_from([["yes", "yes"], ["yes", "yes"]])))

    assert control["percent_agreement"] == 1.0
    assert control["cohen_kappa"][0]["kappa"] is None
    assert control["fleiss_kappa"] is None
    assert control["krippendorff_alpha"]["nominal"] is None
    assert "Cohen's kappa " + ONE_CATEGORY + " (1 and 2)" in control["warnings"]


def test_project_statistics_no_overlap() -> None:
    rows: list[list[str | None]] = [["a", "a", None], ["b", "a", None], [None, "b", "b"], [None, "a", "b"]]

    pairs = only_control(project_statistics(tasks_from(rows)))["cohen_kappa"]

    assert [(pair["first"], pair["second"], pair["items"]) for pair in pairs] == [
        ("1", "2", 2),
        ("1", "3", 0),
        ("2", "3", 2),
    ]
    assert pairs[1]["kappa"] is None
    assert pairs[0]["kappa"] == pytest.approx(0.0)


def test_project_statistics_output_is_strict_json() -> None:
    tasks = [*tasks_from([["yes", "yes"], ["yes", None]]), {"id": 9, "annotations": []}]

    text = json.dumps(project_statistics(tasks), allow_nan=False)

    assert "NaN" not in text


def test_project_statistics_rejects_non_export() -> None:
    with pytest.raises(InvalidInputError, match="expected a Label Studio JSON export"):
        project_statistics("tasks.json")  # type: ignore[arg-type]


# --- project_statistics: extraction of ratings ---------------------------------------------------


def test_project_statistics_report_keys() -> None:
    control = only_control(project_statistics(tasks_from([["a", "b"], ["a", "a"]])))

    assert list(control) == [
        "control",
        "type",
        "items",
        "raters",
        "percent_agreement",
        "cohen_kappa",
        "fleiss_kappa",
        "krippendorff_alpha",
        "warnings",
    ]
    assert control["control"] == "label"
    assert control["type"] == "choices"
    assert control["items"] == 2
    assert control["raters"] == ["1", "2"]
    assert control["percent_agreement"] == 0.5


def test_project_statistics_multiple_choices_one_category() -> None:
    tasks = [
        {
            "id": 1,
            "annotations": [
                annotation(1, result({"choices": ["b", "a"]})),
                annotation(2, result({"choices": ["a", "b"]})),
                annotation(3, result({"choices": ["a"]})),
            ],
        }
    ]

    # Users 1 and 2 chose the same set in another order, user 3 a subset: one of 3 pairs agrees.
    assert only_control(project_statistics(tasks))["percent_agreement"] == pytest.approx(1 / 3)


def test_project_statistics_taxonomy_paths() -> None:
    first = result({"taxonomy": [["Animal", "Cat"], ["Plant"]]}, "taxonomy")
    second = result({"taxonomy": [["Plant"], ["Animal", "Cat"]]}, "taxonomy")
    third = result({"taxonomy": [["Animal", "Dog"], ["Plant"]]}, "taxonomy")
    tasks = [{"id": 1, "annotations": [annotation(1, first), annotation(2, second), annotation(3, third)]}]

    control = only_control(project_statistics(tasks))

    assert control["type"] == "taxonomy"
    assert control["percent_agreement"] == pytest.approx(1 / 3)


def test_project_statistics_rating_levels() -> None:
    def rating(value: int) -> dict[str, Any]:
        return result({"rating": value}, "rating", "stars")

    tasks = [
        {"id": i, "annotations": [annotation(1, rating(a)), annotation(2, rating(b))]}
        for i, (a, b) in enumerate([(1, 2), (3, 3), (5, 4), (2, 2)])
    ]

    alpha = only_control(project_statistics(tasks))["krippendorff_alpha"]

    assert alpha["nominal"] == pytest.approx(krippendorff_alpha([[1, 2], [3, 3], [5, 4], [2, 2]]).value)
    assert alpha["ordinal"] == pytest.approx(krippendorff_alpha([[1, 2], [3, 3], [5, 4], [2, 2]], "ordinal").value)
    assert alpha["interval"] == pytest.approx(krippendorff_alpha([[1, 2], [3, 3], [5, 4], [2, 2]], "interval").value)
    assert alpha["interval"] > alpha["nominal"]


def test_project_statistics_pairwise_selected() -> None:
    tasks = [
        {
            "id": i,
            "annotations": [
                annotation(1, result({"selected": a}, "pairwise")),
                annotation(2, result({"selected": b}, "pairwise")),
            ],
        }
        for i, (a, b) in enumerate([("left", "left"), ("right", "left"), ("right", "right")])
    ]

    control = only_control(project_statistics(tasks))

    assert control["type"] == "pairwise"
    assert control["cohen_kappa"][0]["kappa"] == pytest.approx(
        cohen_kappa(["left", "right", "right"], ["left", "left", "right"]).value
    )


def test_project_statistics_cancelled_left_out() -> None:
    task = {
        "id": 1,
        "annotations": [
            annotation(1, choice("a")),
            annotation(2, choice("a")),
            annotation(3, choice("b"), was_cancelled=True),
        ],
    }

    control = only_control(project_statistics([task]))

    assert control["raters"] == ["1", "2"]
    assert control["percent_agreement"] == 1.0


def test_project_statistics_predictions_as_raters() -> None:
    task = {
        "id": 1,
        "annotations": [annotation(1, choice("a")), annotation(2, choice("b"))],
        "predictions": [{"model_version": "v2", "result": [choice("a")]}],
    }

    without = only_control(project_statistics([task]))
    with_models = only_control(project_statistics([task], include_predictions=True))

    assert without["raters"] == ["1", "2"]
    assert with_models["raters"] == ["1", "2", "v2"]
    assert with_models["percent_agreement"] == pytest.approx(1 / 3)


def test_project_statistics_completed_by_forms() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(7, choice("a")), annotation(8, choice("a"))]},
        {"id": 2, "annotations": [annotation({"id": 7}, choice("b")), annotation(8, choice("b"))]},
    ]

    control = only_control(project_statistics(tasks))

    assert control["raters"] == ["7", "8"]
    assert control["cohen_kappa"][0]["items"] == 2


def test_project_statistics_raters_natural_order() -> None:
    control = only_control(
        project_statistics([{"id": 1, "annotations": [annotation(10, choice("a")), annotation(2, choice("a"))]}])
    )

    assert control["raters"] == ["2", "10"]


def test_project_statistics_duplicate_rater_latest_wins() -> None:
    task = {
        "id": 5,
        "annotations": [
            annotation(1, choice("b"), id=11, updated_at="2024-03-02T10:00:00Z"),
            annotation(1, choice("a"), id=10, updated_at="2024-03-01T10:00:00Z"),
            annotation(2, choice("b"), id=12),
        ],
    }

    control = only_control(project_statistics([task]))

    assert control["percent_agreement"] == 1.0
    assert (
        "a rater has several annotations on one task, and the latest updated one gives the rating"
        " (task 5, annotation 10)"
    ) in control["warnings"]


def test_project_statistics_anonymous_out_of_cohen() -> None:
    tasks = [
        {"id": i, "annotations": [annotation(None, choice(a)), annotation(None, choice(b))]}
        for i, (a, b) in enumerate([("a", "a"), ("a", "b")])
    ]

    control = only_control(project_statistics(tasks))

    assert control["raters"] == []
    assert control["cohen_kappa"] == []
    assert control["fleiss_kappa"] == pytest.approx(fleiss_kappa([["a", "a"], ["a", "b"]]).value)
    assert (
        "4 ratings from annotations without `completed_by` or predictions without `model_version`"
        " count toward every statistic except Cohen's kappa" in control["warnings"]
    )


def test_project_statistics_anonymous_prediction_separate() -> None:
    task = {"id": 1, "annotations": [annotation(None, choice("a"))], "predictions": [{"result": [choice("b")]}]}

    control = only_control(project_statistics([task], include_predictions=True))

    assert control["raters"] == []
    assert control["percent_agreement"] == 0.0


def test_project_statistics_per_region_results_left_out() -> None:
    region_choices = [dict(choice("a"), id="r1"), dict(choice("b"), id="r2")]
    task = {"id": 3, "annotations": [annotation(1, *region_choices, id=30), annotation(2, choice("a"), id=31)]}

    control = only_control(project_statistics([task]))

    assert control["raters"] == ["2"]
    assert (
        "an annotation with several results for this control (per-region classification) gives no rating"
        " (task 3, annotation 30)" in control["warnings"]
    )


def test_project_statistics_malformed_value_left_out() -> None:
    task = {
        "id": 4,
        "annotations": [
            annotation(1, result({"rating": "five"}, "rating"), id=40),
            annotation(2, result({"rating": 5}, "rating")),
        ],
    }

    control = only_control(project_statistics([task]))

    assert control["raters"] == ["2"]
    assert (
        "a malformed result was left out: `value.rating` is not a finite number (task 4, annotation 40)"
        in control["warnings"]
    )


def test_project_statistics_repeated_warning_counted() -> None:
    tasks = [{"id": i, "annotations": [annotation(1, result({"choices": "a"}), id=i)]} for i in range(5)]

    warnings = project_statistics(tasks)["controls"][0]["warnings"]

    assert (
        "a malformed result was left out: `value.choices` is not a list"
        " (5 cases, first: task 0, annotation 0; task 1, annotation 1; task 2, annotation 2)" in warnings
    )


def test_project_statistics_other_types_reported() -> None:
    span = {"from_name": "ner", "to_name": "text", "type": "labels", "value": {"start": 0, "end": 3, "labels": ["X"]}}
    tasks = [{"id": 1, "annotations": [annotation(1, span, choice("a"))]}]

    report = project_statistics(tasks)

    assert [control["control"] for control in report["controls"]] == ["label"]
    assert report["warnings"] == [
        "control 'ner' of type 'labels' has no statistics; they cover the types choices, taxonomy, rating, pairwise"
    ]


def test_project_statistics_empty_selection_is_missing() -> None:
    task = {"id": 1, "annotations": [annotation(1, result({"choices": []})), annotation(2, choice("a"))]}

    control = only_control(project_statistics([task]))

    assert control["raters"] == ["2"]


# --- real corpus files ---------------------------------------------------------------------------


def assert_in_range(control: dict[str, Any]) -> None:
    values = [control["percent_agreement"], control["fleiss_kappa"], *control["krippendorff_alpha"].values()]
    values += [pair["kappa"] for pair in control["cohen_kappa"]]
    for value in values:
        assert value is None or (math.isfinite(value) and -1.0 <= value <= 1.0), f"{control['control']}: {value}"


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


def test_corpus_leoka_taxonomy_three_annotators() -> None:
    report = project_statistics(load("labels_taxonomy_3annotators_leoka.json"))
    control = only_control(report)

    assert control["control"] == "Category"
    assert control["type"] == "taxonomy"
    assert control["items"] == 8
    assert len(control["raters"]) == 3
    assert [pair["items"] for pair in control["cohen_kappa"]] == [8, 8, 8]
    assert control["warnings"] == []
    assert 0.0 < control["percent_agreement"] <= 1.0
    assert 0.0 < control["fleiss_kappa"] <= 1.0
    assert 0.0 < control["krippendorff_alpha"]["nominal"] <= 1.0
    assert_in_range(control)


def test_corpus_leoka_edge_cases() -> None:
    control = only_control(project_statistics(load("labels_taxonomy_edgecases_leoka.json")))

    # annotator5 and annotator9 only have cancelled annotations.
    assert "annotator5@example.com" not in control["raters"]
    assert "annotator9@example.com" not in control["raters"]
    assert_in_range(control)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda path: path.name)
def test_corpus_every_file_in_range(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))

    report = project_statistics(data, include_predictions=True)

    json.dumps(report, allow_nan=False)
    for control in report["controls"]:
        assert_in_range(control)


def test_corpus_sentiment_choices_values() -> None:
    # One task with four anonymous ratings: Negative, Negative, Neutral, Neutral.
    control = only_control(project_statistics(load("choices_sentiment_4files_merged_lsf-example.json")))

    assert control["percent_agreement"] == pytest.approx(1 / 3)
    assert control["fleiss_kappa"] == pytest.approx(-1 / 3)
    assert control["krippendorff_alpha"]["nominal"] == pytest.approx(0.0, abs=1e-12)


def test_corpus_old_format_completions() -> None:
    # Pre-1.0 "completions" with nested results: Neutral, Evil, and the set (Evil, Neutral), all anonymous.
    control = only_control(project_statistics(load("choices_multi_completions_oldformat_evalme.json")))

    assert control["items"] == 1
    assert control["percent_agreement"] == 0.0
    assert control["raters"] == []
