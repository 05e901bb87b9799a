"""Tests for the built-in registry: names, sources and rendering of the OPTIONS literal."""

from __future__ import annotations

import ast

import pytest
from builtin_loading import load_builtin

from custom_metrics import builtins
from custom_metrics.errors import InvalidInputError

OWN_FILES = ("exact_match.py", "numeric.py", "spans.py", "text.py", "relation.py")


def test_names_sorted_and_complete() -> None:
    assert builtins.names() == sorted(builtins.BUILTIN_FILES)
    for name in ("choices", "taxonomy", "pairwise", "datetime", "ranker", "relation", "rating", "number"):
        assert name in builtins.names()
    for name in ("labels", "hypertextlabels", "paragraphlabels", "timeserieslabels", "timelinelabels", "textarea"):
        assert name in builtins.names()


def test_source_unknown_name_lists_valid_names() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.source("polygon")
    assert isinstance(caught.value, builtins.BuiltinNotFound)
    assert "'polygon'" in caught.value.message
    assert "choices" in caught.value.message
    assert caught.value.details["valid_builtins"] == builtins.names()


def test_render_unknown_name_raises() -> None:
    with pytest.raises(builtins.BuiltinNotFound):
        builtins.render("nope", {})


@pytest.mark.parametrize("name", builtins.names())
def test_render_defaults_compiles_with_agreement(name: str) -> None:
    module = load_builtin(name)
    assert callable(module.agreement)
    assert "control_weights" in module.OPTIONS
    assert "label_weights" in module.OPTIONS
    assert module.agreement({"result": []}, {"result": []}) == 1.0


@pytest.mark.parametrize("name", [name for name, file in builtins.BUILTIN_FILES.items() if file in OWN_FILES])
def test_render_defaults_reproduces_source(name: str) -> None:
    assert builtins.render(name) == builtins.source(name)
    assert builtins.render(name, {}) == builtins.source(name)


def test_render_options_replace_literal() -> None:
    rendered = builtins.render("choices", {"control_weights": {"sentiment": 2, "tax": 0}, "selection_match": "exact"})
    module = load_builtin("choices", {"control_weights": {"sentiment": 2, "tax": 0}, "selection_match": "exact"})
    assert module.OPTIONS["control_weights"] == {"sentiment": 2, "tax": 0}
    assert module.OPTIONS["selection_match"] == "exact"
    assert module.OPTIONS["taxonomy_partial_credit"] is False
    assert rendered.count("OPTIONS: dict[str, Any] = {") == 1


def test_render_escapes_strings_round_trip() -> None:
    awkward = 'a "quoted" \\ back\nslash \t tab \u0430 \x00 }'
    module = load_builtin("choices", {"label_weights": {awkward: 0.5}})
    assert module.OPTIONS["label_weights"] == {awkward: 0.5}


def test_render_unknown_option_names_key_and_valid_ones() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render("labels", {"iou_treshold": 0.3})
    assert "'iou_treshold'" in caught.value.message
    assert "iou_threshold" in caught.value.message
    assert caught.value.details["option"] == "iou_treshold"


def test_render_wrong_option_type_raises() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render("labels", {"control_weights": [1, 2]})
    assert "'control_weights'" in caught.value.message


def test_render_bool_for_number_option_raises() -> None:
    with pytest.raises(InvalidInputError):
        builtins.render("labels", {"iou_threshold": True})


def test_render_accepts_int_for_float() -> None:
    assert load_builtin("labels", {"iou_threshold": 1}).OPTIONS["iou_threshold"] == 1
    assert load_builtin("rating", {"number_range": 10}).OPTIONS["number_range"] == 10


def test_render_non_finite_value_raises() -> None:
    with pytest.raises(InvalidInputError):
        builtins.render("labels", {"iou_threshold": float("nan")})


def test_render_non_json_value_raises() -> None:
    with pytest.raises(InvalidInputError):
        builtins.render("number", {"number_range": {1, 2}})


def test_default_options_parse_literal() -> None:
    assert builtins.default_options("labels") == ast.literal_eval(
        builtins.render("labels").split("OPTIONS: dict[str, Any] = ", 1)[1].split("\n}\n", 1)[0] + "\n}"
    )


@pytest.mark.parametrize("name", builtins.names())
def test_summary_is_first_docstring_line(name: str) -> None:
    summary = builtins.summary(name)
    assert summary
    assert "\n" not in summary
