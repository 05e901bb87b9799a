from __future__ import annotations

import pytest

from custom_metrics import naming
from custom_metrics.errors import InvalidInputError


def test_function_name_without_prefix() -> None:
    assert naming.function_name("42") == "custom-metric-42"


def test_function_name_with_prefix() -> None:
    assert naming.function_name("42", "team_a") == "custom-metric-team_a-42"


@pytest.mark.parametrize("project", ["", "a b", "proj/1", "ünï", "x.y"])
def test_function_name_rejects_bad_project(project: str) -> None:
    with pytest.raises(InvalidInputError, match="project"):
        naming.function_name(project)


def test_function_name_rejects_over_64_characters() -> None:
    with pytest.raises(InvalidInputError, match="over Lambda's limit of 64"):
        naming.function_name("p" * 40, "x" * 20)


def test_function_name_accepts_exactly_64_characters() -> None:
    project = "p" * (64 - len("custom-metric-"))
    assert len(naming.function_name(project)) == 64


def test_function_name_reports_prefix_and_project_together() -> None:
    with pytest.raises(InvalidInputError) as caught:
        naming.function_name("bad project", "bad prefix")
    assert len(caught.value.details["errors"]) == 2


def test_validate_tags_accepts_lambda_characters() -> None:
    tags = {"team": "ml ops", "cost-center": "a/b=c+d@e:f_g.h"}
    assert naming.validate_tags(tags) == tags


def test_validate_tags_reports_every_violation_at_once() -> None:
    tags = {"aws:owner": "x", "k" * 129: "v", "ok": "v" * 257, "bad#key": "v", "good": "bad|value"}
    with pytest.raises(InvalidInputError) as caught:
        naming.validate_tags(tags)
    errors = caught.value.details["errors"]
    assert any("aws:" in error for error in errors)
    assert any("129 characters" in error for error in errors)
    assert any("257 characters" in error for error in errors)
    assert any("'bad#key'" in error for error in errors)
    assert any("bad|value" in error for error in errors)


def test_validate_tags_rejects_more_than_user_limit() -> None:
    tags = {f"k{number}": "v" for number in range(naming.MAX_USER_TAGS + 1)}
    with pytest.raises(InvalidInputError, match=f"over the limit of {naming.MAX_USER_TAGS}"):
        naming.validate_tags(tags)


def test_validate_tags_rejects_managed_key() -> None:
    with pytest.raises(InvalidInputError, match="set by custom-metrics"):
        naming.validate_tags({naming.MANAGED_TAG_PROJECT: "x"})


def test_tags_from_pairs_rejects_repeated_key() -> None:
    with pytest.raises(InvalidInputError, match="given twice"):
        naming.tags_from_pairs([("team", "a"), ("team", "b")])


@pytest.mark.parametrize(("project", "prefix"), [("nl\n", None), ("ok", "pf\n")])
def test_function_name_rejects_trailing_newline(project: str, prefix: str | None) -> None:
    with pytest.raises(InvalidInputError, match="contains characters"):
        naming.function_name(project, prefix)


@pytest.mark.parametrize("tags", [{"k\n": "v"}, {"k": "v\n"}])
def test_validate_tags_rejects_trailing_newline(tags: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError, match="Lambda rejects"):
        naming.validate_tags(tags)
