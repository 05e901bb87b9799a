"""The statistics against scikit-learn, statsmodels and the krippendorff package on seeded random data."""

from __future__ import annotations

import math
import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from custom_metrics.statistics import cohen_kappa, fleiss_kappa, krippendorff_alpha, project_statistics

TOLERANCE = 1e-9
CATEGORY_NAMES = ["negative", "neutral", "positive", "mixed", "other", "spam", "unclear"]


def random_pair(rng: random.Random, items: int, categories: int, agreement: float) -> tuple[list[str], list[str]]:
    """Two raters' labels where the second copies the first with probability `agreement`."""
    names = CATEGORY_NAMES[:categories]
    first = [rng.choice(names) for _ in range(items)]
    second = [label if rng.random() < agreement else rng.choice(names) for label in first]
    return first, second


def random_matrix(
    rng: random.Random, raters: int, items: int, categories: int, missing: float
) -> list[list[float | None]]:
    """A raters x items matrix of ratings 1..categories around a per-item true value, None for missing."""
    matrix: list[list[float | None]] = [[] for _ in range(raters)]
    for _ in range(items):
        truth = rng.randint(1, categories)
        for row in matrix:
            if rng.random() < missing:
                row.append(None)
            else:
                noisy = truth + rng.choice([-1, 0, 0, 0, 1])
                row.append(float(min(max(noisy, 1), categories)))
    return matrix


def units_of(matrix: list[list[float | None]]) -> list[list[float]]:
    return [[row[item] for row in matrix if row[item] is not None] for item in range(len(matrix[0]))]  # type: ignore[misc]


def reference_alpha(matrix: list[list[float | None]], level: str) -> float:
    data = np.array([[np.nan if value is None else value for value in row] for row in matrix], dtype=float)
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


@pytest.mark.parametrize(
    ("seed", "items", "categories", "agreement"),
    [(1, 10, 2, 0.5), (2, 50, 3, 0.7), (3, 200, 5, 0.3), (4, 1000, 7, 0.9), (5, 3, 2, 0.0)],
)
def test_cohen_kappa_matches_sklearn(seed: int, items: int, categories: int, agreement: float) -> None:
    rng = random.Random(seed)
    first, second = random_pair(rng, items, categories, agreement)
    if len(set(first) | set(second)) < 2:
        first[0], second[0] = CATEGORY_NAMES[0], CATEGORY_NAMES[1]

    expected = cohen_kappa_score(first, second)
    result = cohen_kappa(first, second)

    assert result.value == pytest.approx(expected, abs=TOLERANCE)
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("seed", "raters", "items", "categories"),
    [(11, 2, 20, 2), (12, 3, 50, 3), (13, 5, 100, 4), (14, 10, 300, 5), (15, 4, 7, 6)],
)
def test_fleiss_kappa_matches_statsmodels(seed: int, raters: int, items: int, categories: int) -> None:
    rng = random.Random(seed)
    matrix = random_matrix(rng, raters, items, categories, missing=0.0)
    units = units_of(matrix)
    table, _ = aggregate_raters(np.array(units))

    expected = statsmodels_fleiss_kappa(table, method="fleiss")
    result = fleiss_kappa(units)

    assert result.value == pytest.approx(expected, abs=TOLERANCE)
    assert result.warnings == ()


def test_fleiss_kappa_mixed_counts_uses_most_common() -> None:
    rng = random.Random(21)
    three = units_of(random_matrix(rng, 3, 40, 4, missing=0.0))
    four = units_of(random_matrix(rng, 4, 25, 4, missing=0.0))
    table, _ = aggregate_raters(np.array(three))

    result = fleiss_kappa(three + four)

    assert result.value == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=TOLERANCE)
    assert result.warnings == (
        "Fleiss' kappa uses the 40 items with 3 ratings each and leaves out 25 items with another number of ratings",
    )


def test_fleiss_kappa_count_tie_prefers_more_raters() -> None:
    rng = random.Random(22)
    two = units_of(random_matrix(rng, 2, 30, 3, missing=0.0))
    five = units_of(random_matrix(rng, 5, 30, 3, missing=0.0))
    table, _ = aggregate_raters(np.array(five))

    result = fleiss_kappa(two + five)

    assert result.value == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=TOLERANCE)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize(
    ("seed", "raters", "items", "categories", "missing"),
    [
        (31, 2, 30, 3, 0.0),
        (32, 3, 100, 5, 0.2),
        (33, 5, 200, 4, 0.5),
        (34, 8, 60, 7, 0.7),
        (35, 4, 500, 10, 0.3),
    ],
)
def test_krippendorff_alpha_matches_package(
    level: str, seed: int, raters: int, items: int, categories: int, missing: float
) -> None:
    rng = random.Random(seed)
    matrix = random_matrix(rng, raters, items, categories, missing)

    expected = reference_alpha(matrix, level)
    result = krippendorff_alpha(units_of(matrix), level)  # type: ignore[arg-type]

    assert result.value == pytest.approx(expected, abs=TOLERANCE)
    assert result.warnings == ()


def test_krippendorff_alpha_nominal_ignores_category_type() -> None:
    rng = random.Random(41)
    matrix = random_matrix(rng, 4, 80, 5, missing=0.4)
    as_labels = [[CATEGORY_NAMES[int(value) - 1] for value in unit] for unit in units_of(matrix)]

    result = krippendorff_alpha(as_labels, "nominal")

    assert result.value == pytest.approx(reference_alpha(matrix, "nominal"), abs=TOLERANCE)


def test_krippendorff_alpha_published_example() -> None:
    # Krippendorff's "C" reliability data (4 observers, 12 units, with missing values), as listed in the
    # KrippAlpha example of the R package DescTools. Rounded, alpha is 0.743 (nominal) and 0.849 (interval).
    nan = None
    matrix: list[list[float | None]] = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    units = units_of(matrix)

    assert krippendorff_alpha(units, "nominal").value == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval").value == pytest.approx(0.849, abs=5e-4)
    for level in ("nominal", "ordinal", "interval"):
        assert krippendorff_alpha(units, level).value == pytest.approx(reference_alpha(matrix, level), abs=TOLERANCE)


def test_cohen_kappa_hand_computed() -> None:
    # 50 items: both "yes" 20, yes/no 5, no/yes 10, both "no" 15. Observed 0.7; chance 0.5*0.6 + 0.5*0.4 = 0.5.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15

    assert cohen_kappa(first, second).value == pytest.approx(0.4, abs=TOLERANCE)


def matrix_to_tasks(matrix: list[list[float | None]], result_type: str) -> list[dict[str, object]]:
    """Label Studio tasks where rater r of the matrix is user r+1 and each rating is one result."""
    tasks: list[dict[str, object]] = []
    for item in range(len(matrix[0])):
        annotations = []
        for rater, row in enumerate(matrix):
            value = row[item]
            if value is None:
                continue
            if result_type == "rating":
                result_value: dict[str, object] = {"rating": int(value)}
            else:
                result_value = {"choices": [CATEGORY_NAMES[int(value) - 1]]}
            result = {"from_name": "control", "to_name": "text", "type": result_type, "value": result_value}
            annotations.append({"id": item * 100 + rater, "completed_by": rater + 1, "result": [result]})
        tasks.append({"id": item, "annotations": annotations})
    return tasks


@pytest.mark.parametrize("result_type", ["rating", "choices"])
def test_project_statistics_matches_references(result_type: str) -> None:
    rng = random.Random(51)
    matrix = random_matrix(rng, 4, 120, 5, missing=0.3)

    report = project_statistics(matrix_to_tasks(matrix, result_type))  # type: ignore[arg-type]
    control = report["controls"][0]

    assert control["krippendorff_alpha"]["nominal"] == pytest.approx(reference_alpha(matrix, "nominal"), abs=TOLERANCE)
    for pair in control["cohen_kappa"]:
        first, second = matrix[int(pair["first"]) - 1], matrix[int(pair["second"]) - 1]
        shared = [item for item in range(len(first)) if first[item] is not None and second[item] is not None]
        expected = cohen_kappa_score([first[i] for i in shared], [second[i] for i in shared])
        assert pair["items"] == len(shared)
        assert pair["kappa"] == pytest.approx(expected, abs=TOLERANCE)
    if result_type == "rating":
        assert control["krippendorff_alpha"]["ordinal"] == pytest.approx(
            reference_alpha(matrix, "ordinal"), abs=TOLERANCE
        )
        assert control["krippendorff_alpha"]["interval"] == pytest.approx(
            reference_alpha(matrix, "interval"), abs=TOLERANCE
        )
    else:
        assert control["krippendorff_alpha"]["ordinal"] is None
    assert math.isfinite(control["fleiss_kappa"])
