"""Pair building and aggregation on hand-computed cases, with scores supplied directly."""

from __future__ import annotations

from typing import Any

import pytest

from custom_metrics.aggregate import aggregate, pair_record
from custom_metrics.errors import InvalidInputError
from custom_metrics.tasks import build_pairs, export_warnings, parse_export


def annotation(item_id: int, user: Any, result: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "completed_by": user, "result": result if result is not None else [], **extra}


def run(tasks: Any, scores: dict[tuple[Any, Any], Any], mode: str = "annotations") -> dict[str, Any]:
    """Aggregate with scores looked up by (first id, second id); a string value becomes an error."""
    export = parse_export(tasks)
    pairs = build_pairs(export, mode)
    records = []
    for pair in pairs:
        value = scores[(pair.first.id, pair.second.id)]
        if isinstance(value, str):
            result = {"score": None, "per_label": None, "error": {"type": "ValueError", "message": value}}
        elif isinstance(value, tuple):
            result = {"score": value[0], "per_label": value[1], "error": None}
        else:
            result = {"score": value, "per_label": None, "error": None}
        records.append(pair_record(pair, result))
    return aggregate([task.key for task in export.tasks], records)


def test_three_annotators_task_mean_and_matrix() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2), annotation(12, 3)]}]
    result = run(tasks, {(10, 11): 1.0, (10, 12): 0.5, (11, 12): 0.0})
    assert result["tasks"][0]["agreement"] == pytest.approx(0.5)
    assert result["tasks"][0]["pairs"] == 3
    assert result["agreement"] == pytest.approx(0.5)
    matrix = {(cell["first"], cell["second"]): cell["agreement"] for cell in result["annotators"]}
    assert matrix == {("1", "2"): 1.0, ("1", "3"): 0.5, ("2", "3"): 0.0}


def test_cancelled_annotation_left_out() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2, was_cancelled=True), annotation(12, 3)]}]
    result = run(tasks, {(10, 12): 0.25})
    assert result["tasks"][0]["pairs"] == 1
    assert result["agreement"] == pytest.approx(0.25)


def test_single_annotation_task_is_null() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)]},
        {"id": 2, "annotations": [annotation(20, 1)]},
    ]
    result = run(tasks, {(10, 11): 0.8})
    assert result["tasks"][1]["agreement"] is None
    assert result["tasks"][1]["pairs"] == 0
    assert result["agreement"] == pytest.approx(0.8)


def test_project_agreement_is_mean_of_task_means() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(10, 1), annotation(11, 2), annotation(12, 3)]},
        {"id": 2, "annotations": [annotation(20, 1), annotation(21, 2)]},
    ]
    result = run(tasks, {(10, 11): 1.0, (10, 12): 1.0, (11, 12): 0.4, (20, 21): 0.0})
    # Task 1: 0.8; task 2: 0.0; the project is their mean, not the mean of the four pairs.
    assert result["agreement"] == pytest.approx(0.4)


def test_empty_results_are_still_compared() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1, []), annotation(11, 2, [])]}]
    assert len(build_pairs(parse_export(tasks))) == 1


def test_pair_error_counted_and_left_out_of_means() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2), annotation(12, 3)]}]
    result = run(tasks, {(10, 11): 1.0, (10, 12): "boom", (11, 12): 0.5})
    assert result["errors"] == 1
    assert result["tasks"][0]["errors"] == 1
    assert result["tasks"][0]["agreement"] == pytest.approx(0.75)


def test_task_with_only_errors_is_null() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)]}]
    result = run(tasks, {(10, 11): "boom"})
    assert result["agreement"] is None


def test_predictions_mode_pairs_each_annotation_with_each_prediction() -> None:
    tasks = [
        {
            "id": 1,
            "annotations": [annotation(10, 1), annotation(11, 2)],
            "predictions": [{"id": 90, "model_version": "yolo-v8", "result": []}, {"id": 91, "result": []}],
        }
    ]
    result = run(tasks, {(10, 90): 1.0, (10, 91): 0.0, (11, 90): 0.5, (11, 91): 0.5}, mode="predictions")
    assert len(result["pairs"]) == 4
    seconds = {pair["second"]["by"] for pair in result["pairs"]}
    assert seconds == {"yolo-v8", "prediction 91"}
    assert result["agreement"] == pytest.approx(0.5)


def test_all_mode_includes_annotation_and_prediction_pairs() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)], "predictions": [{"id": 90, "result": []}]}
    ]
    result = run(tasks, {(10, 11): 1.0, (10, 90): 0.0, (11, 90): 0.0}, mode="all")
    assert len(result["pairs"]) == 3
    assert result["agreement"] == pytest.approx(1 / 3)


def test_ground_truth_mode_compares_against_reference() -> None:
    tasks = [
        {
            "id": 1,
            "annotations": [annotation(10, 1), annotation(11, 2, ground_truth=True), annotation(12, 3)],
        }
    ]
    result = run(tasks, {(10, 11): 1.0, (12, 11): 0.0}, mode="ground_truth")
    assert [(pair["first"]["id"], pair["second"]["id"]) for pair in result["pairs"]] == [(10, 11), (12, 11)]
    assert result["agreement"] == pytest.approx(0.5)


def test_ground_truth_mode_without_reference_has_no_pairs() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)]}]
    assert build_pairs(parse_export(tasks), "ground_truth") == []


def test_per_label_means_over_pairs_having_label() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2), annotation(12, 3)]}]
    scores = {(10, 11): (1.0, {"Person": 1.0, "Date": 0.5}), (10, 12): (0.5, {"Person": 0.0}), (11, 12): (0.0, {})}
    result = run(tasks, scores)
    assert result["labels"] == {"Date": pytest.approx(0.5), "Person": pytest.approx(0.5)}


def test_annotator_named_by_email_object() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, {"id": 7, "email": "a@example.com"}), annotation(11, {"id": 8})]}]
    result = run(tasks, {(10, 11): 1.0})
    assert result["annotators"][0]["first"] == "a@example.com"
    assert result["annotators"][0]["second"] == "8"


def test_matrix_merges_both_orders_of_annotator_pair() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)]},
        {"id": 2, "annotations": [annotation(20, 2), annotation(21, 1)]},
    ]
    result = run(tasks, {(10, 11): 1.0, (20, 21): 0.0})
    assert len(result["annotators"]) == 1
    assert result["annotators"][0]["agreement"] == pytest.approx(0.5)
    assert result["annotators"][0]["pairs"] == 2


def test_single_task_object_accepted() -> None:
    export = parse_export({"id": 5, "annotations": [annotation(1, 1), annotation(2, 2)]})
    assert [task.key for task in export.tasks] == [5]


def test_old_completions_key_accepted() -> None:
    export = parse_export([{"id": 1, "completions": [annotation(1, 1), annotation(2, 2)]}])
    assert len(export.tasks[0].annotations) == 2


def test_prediction_ids_without_results_left_out_with_warning() -> None:
    export = parse_export([{"id": 1, "annotations": [annotation(1, 1)], "predictions": [3, 4]}])
    assert export.tasks[0].predictions == []
    assert "2 prediction(s)" in export.warnings[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not tasks", "got a JSON string"),
        ([1, 2], "task at position 0 is a JSON number"),
        ([{"id": 1, "annotations": {"a": 1}}], "`annotations` is a JSON object"),
        ([{"id": 1, "annotations": [{"id": 2}]}], "`result` is missing"),
        ([{"id": 1, "annotations": [{"id": 2, "result": "x"}]}], "`result` is a JSON string"),
        ([{"id": 1, "annotations": ["x"]}], "annotation at position 0 is a JSON string"),
    ],
)
def test_parse_export_rejects_bad_shapes(data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_export(data)


def test_build_pairs_rejects_unknown_mode() -> None:
    with pytest.raises(InvalidInputError, match="unknown pair mode 'every'"):
        build_pairs(parse_export([]), "every")


def test_nested_pre_1_0_result_is_flattened() -> None:
    region = {"id": "r", "type": "choices", "from_name": "c", "to_name": "t", "value": {"choices": ["A"]}}
    export = parse_export([{"id": 1, "completions": [{"id": 1, "result": [[region]]}]}])
    assert export.tasks[0].annotations[0].body["result"] == [region]


def test_pair_controls_lists_both_sides() -> None:
    region_a = {"from_name": "sentiment", "type": "choices", "value": {"choices": ["A"]}}
    region_b = {"from_name": "topic", "type": "choices", "value": {"choices": ["B"]}}
    relation = {"type": "relation", "from_id": "x", "to_id": "y"}
    tasks = [{"id": 1, "annotations": [annotation(1, 1, [region_a, relation]), annotation(2, 2, [region_b])]}]
    pair = build_pairs(parse_export(tasks))[0]
    assert pair.controls() == ["sentiment", "topic"]
    restricted = pair.control_payload("sentiment")
    assert restricted["id"] == "0:0#sentiment"
    assert restricted["annotation_1"]["result"] == [region_a]
    assert restricted["annotation_2"]["result"] == []


def test_control_means_skip_errors() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2), annotation(12, 3)]}]
    export = parse_export(tasks)
    pairs = build_pairs(export)
    control_results = [
        {"ner": {"score": 1.0, "error": None}, "topic": {"score": 0.0, "error": None}},
        {"ner": {"score": 0.5, "error": None}, "topic": {"score": None, "error": {"type": "E", "message": "m"}}},
        {"ner": {"score": 0.0, "error": None}},
    ]
    records = [
        pair_record(pair, {"score": 0.5, "per_label": None, "error": None}, controls)
        for pair, controls in zip(pairs, control_results, strict=True)
    ]
    result = aggregate([1], records)
    assert result["controls"] == {"ner": pytest.approx(0.5), "topic": pytest.approx(0.0)}


def test_duplicate_task_ids_scored_separately() -> None:
    tasks = [
        {"id": 1, "annotations": [annotation(10, 1)]},
        {"id": 1, "annotations": [annotation(20, 1), annotation(21, 2)]},
    ]
    result = run(tasks, {(20, 21): 1.0})
    assert [task["pairs"] for task in result["tasks"]] == [0, 1]
    assert result["tasks"][0]["agreement"] is None
    assert any(
        "task ids repeat (1)" in warning for warning in export_warnings(parse_export(tasks).tasks, "annotations")
    )


def test_export_without_annotations_warns() -> None:
    export = parse_export([{"foo": 1}])
    assert any("is this a Label Studio JSON export" in warning for warning in export_warnings(export.tasks, "all"))


def test_tasks_without_id_warn() -> None:
    export = parse_export([{"annotations": []}, {"annotations": []}])
    assert any("2 task(s) have no `id`" in warning for warning in export_warnings(export.tasks, "all"))


def test_ground_truth_mode_without_reference_warns() -> None:
    export = parse_export([{"id": 1, "annotations": [annotation(10, 1), annotation(11, 2)]}])
    warnings = export_warnings(export.tasks, "ground_truth")
    assert any("no task has a `ground_truth: true`" in warning for warning in warnings)


def test_ground_truth_mode_with_two_references_warns() -> None:
    tasks = [{"id": 1, "annotations": [annotation(10, 1, ground_truth=True), annotation(11, 2, ground_truth=True)]}]
    warnings = export_warnings(parse_export(tasks).tasks, "ground_truth")
    assert any("several ground-truth annotations" in warning for warning in warnings)
