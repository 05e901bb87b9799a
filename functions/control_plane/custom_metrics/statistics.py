"""Chance-corrected agreement statistics for the categorical controls of a Label Studio export.

`project_statistics(tasks)` computes, for each `choices`, `taxonomy`, `rating` and `pairwise`
control (grouped by `from_name`), percent agreement, Cohen's kappa for each pair of raters,
Fleiss' kappa and Krippendorff's alpha over the whole project. The statistic functions below take
plain Python values, so they also work on data from elsewhere. The code is plain Python because
numpy is not a runtime dependency.

Ratings:
- An item is a task. A rater is an annotator (named as in the agreement output: the e-mail of
  `completed_by`, else its id) and, with `include_predictions=True`, a model named by its
  `model_version`. Cancelled annotations are left out. `ground_truth` annotations count as any other.
- A rating is the category one annotation gives one control. `choices` with one choice gives that
  choice, and with several the sorted tuple of them as one category. A taxonomy path or a nested
  choice path is joined with " / ", and several paths give their sorted tuple. `rating` gives its
  number and `pairwise` gives `selected`. Two sets that share some entries are different categories, so they
  disagree. These give no rating for the item: no result for the control, an empty selection,
  several results for the control (per-region classification), a malformed value. The last two
  add a warning.
- When one rater has several annotations on a task, the one with the latest `updated_at` (or
  `created_at` when `updated_at` is missing) gives the rating, and on a tie the one listed last.
- Annotations without `completed_by`, and predictions without `model_version`, have no rater
  identity. They count toward percent agreement, Fleiss' kappa and Krippendorff's alpha, which need
  only the ratings of each item, and stay out of Cohen's kappa and the `raters` list.

Statistics (nominal: two ratings agree when their categories are equal):
- Percent agreement is the mean, over items with two or more ratings, of the share of agreeing
  pairs of ratings within the item.
- Cohen's kappa is computed for each pair of identified raters on the items both rated. The list
  has one entry per pair, pairs without shared items included.
- Fleiss' kappa needs the same number of ratings on every item. It uses the most common number
  of ratings among items with two or more (a tie goes to the larger number). Items with another
  number of ratings are left out, and a warning gives their count.
- Krippendorff's alpha uses every item with two or more ratings, so missing ratings are allowed.
  The ordinal and interval levels are computed for `rating` controls only and are None otherwise.

Degenerate cases give None with a warning, never NaN or an exception. (`project_statistics` raises
InvalidInputError only when its input is not a Label Studio export.)
- No item has two or more ratings (one rater per item, or no data): every statistic is None.
- Two raters share no items: their Cohen's kappa is None, with `items` 0.
- One category is used in all the ratings a statistic reads: chance agreement is then 1, so kappa
  and alpha are 0/0 and None. Percent agreement stays defined (1.0).
A project without categorical ratings gives an empty `controls` list and a warning.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from custom_metrics.tasks import KIND_ANNOTATION, Item, parse_export

logger = logging.getLogger(__name__)

Category = str | float | tuple[str, ...]
Level = Literal["nominal", "ordinal", "interval"]

CATEGORICAL_TYPES = ("choices", "taxonomy", "rating", "pairwise")
NUMERIC_TYPES = frozenset({"rating"})
PATH_SEPARATOR = " / "
MAX_WARNING_EXAMPLES = 3


class Statistic(NamedTuple):
    """A statistic's value (None when it is undefined) and the warnings that explain it."""

    value: float | None
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Statistics on plain values
# ---------------------------------------------------------------------------------------------


def percent_agreement(units: Iterable[Sequence[Hashable]]) -> Statistic:
    """Compute the mean share of agreeing rating pairs within each item that has two or more ratings."""
    total = 0.0
    items = 0
    for values in units:
        size = len(values)
        if size < 2:
            continue
        agreeing_pairs = sum(count * (count - 1) for count in Counter(values).values())
        total += agreeing_pairs / (size * (size - 1))
        items += 1
    if items == 0:
        return Statistic(None, ("percent agreement is null because no item has two or more ratings",))
    return Statistic(total / items)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> Statistic:
    """Compute Cohen's kappa of two raters from their ratings of the same items, in the same order.

    Raises ValueError when the two sequences differ in length.
    """
    if len(first) != len(second):
        raise ValueError(
            f"cohen_kappa needs one rating per item from each rater, got {len(first)} and {len(second)} ratings; "
            "pass the ratings of the items both raters rated"
        )
    size = len(first)
    if size == 0:
        return Statistic(None, ("Cohen's kappa is null because the two raters share no items",))
    first_counts = Counter(first)
    second_counts = Counter(second)
    categories = set(first_counts) | set(second_counts)
    if len(categories) == 1:
        return Statistic(None, (_one_category_warning("Cohen's kappa", categories),))
    observed = sum(1 for a, b in zip(first, second, strict=True) if a == b) / size
    expected = sum(first_counts[category] * second_counts[category] for category in first_counts) / (size * size)
    return Statistic((observed - expected) / (1 - expected))


def fleiss_kappa(units: Iterable[Sequence[Hashable]]) -> Statistic:
    """Compute Fleiss' kappa over the items that have the most common number of ratings (two or more)."""
    rated = [values for values in units if len(values) >= 2]
    if not rated:
        return Statistic(None, ("Fleiss' kappa is null because no item has two or more ratings",))

    sizes = Counter(len(values) for values in rated)
    raters = max(sizes, key=lambda size: (sizes[size], size))
    same_size = [values for values in rated if len(values) == raters]
    warnings: tuple[str, ...] = ()
    if len(same_size) < len(rated):
        warnings = (
            f"Fleiss' kappa uses the {_plural(len(same_size), 'item')} with {raters} ratings each and leaves out "
            f"{_plural(len(rated) - len(same_size), 'item')} with another number of ratings",
        )

    category_totals: Counter[Hashable] = Counter()
    item_agreement = 0.0
    for values in same_size:
        counts = Counter(values)
        category_totals.update(counts)
        item_agreement += (sum(count * count for count in counts.values()) - raters) / (raters * (raters - 1))
    if len(category_totals) == 1:
        return Statistic(None, (*warnings, _one_category_warning("Fleiss' kappa", category_totals)))

    observed = item_agreement / len(same_size)
    ratings = len(same_size) * raters
    expected = sum((total / ratings) ** 2 for total in category_totals.values())
    return Statistic((observed - expected) / (1 - expected), warnings)


def krippendorff_alpha(units: Iterable[Sequence[Category]], level: Level = "nominal") -> Statistic:
    """Compute Krippendorff's alpha from each item's ratings; items with fewer than two ratings carry no pairs.

    Raises ValueError when `level` is ordinal or interval and a rating is not a number.
    """
    coincidences = _coincidences(units)
    if not coincidences:
        return Statistic(None, ("Krippendorff's alpha is null because no item has two or more ratings",))
    marginals: defaultdict[Category, float] = defaultdict(float)
    for (value, _other), weight in coincidences.items():
        marginals[value] += weight
    if len(marginals) == 1:
        return Statistic(None, (_one_category_warning("Krippendorff's alpha", marginals),))

    pairable = sum(marginals.values())
    if level == "nominal":
        observed = pairable - sum(weight for (value, other), weight in coincidences.items() if value == other)
        expected = (pairable * pairable - sum(total * total for total in marginals.values())) / (pairable - 1)
    else:
        distance = _distance_function(level, marginals)
        observed = sum(weight * distance(value, other) for (value, other), weight in coincidences.items())
        expected = sum(
            marginals[value] * marginals[other] * distance(value, other) for value in marginals for other in marginals
        ) / (pairable - 1)
    return Statistic(1 - observed / expected)


def _coincidences(units: Iterable[Sequence[Category]]) -> dict[tuple[Category, Category], float]:
    """Build Krippendorff's coincidence matrix: each item adds its ordered value pairs weighted 1/(m-1)."""
    matrix: defaultdict[tuple[Category, Category], float] = defaultdict(float)
    for values in units:
        size = len(values)
        if size < 2:
            continue
        counts = Counter(values)
        for value, count in counts.items():
            for other, other_count in counts.items():
                pairs = count * (count - 1) if value == other else count * other_count
                if pairs:
                    matrix[(value, other)] += pairs / (size - 1)
    return dict(matrix)


def _distance_function(level: Level, marginals: Mapping[Category, float]) -> Callable[[Category, Category], float]:
    """Return the squared distance of two values at `level` (ordinal ranks use the pairable value counts)."""
    numbers: dict[Category, float] = {}
    for value in marginals:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(
                f"Krippendorff's alpha at the {level} level needs numeric ratings, got {value!r}; "
                "use the nominal level for categories"
            )
        numbers[value] = float(value)
    if level == "interval":
        return lambda value, other: (numbers[value] - numbers[other]) ** 2

    ordered = sorted(marginals, key=lambda value: numbers[value])
    rank = {value: position for position, value in enumerate(ordered)}
    cumulative = list(itertools.accumulate((marginals[value] for value in ordered), initial=0.0))

    def ordinal_distance(value: Category, other: Category) -> float:
        low, high = sorted((rank[value], rank[other]))
        between = cumulative[high + 1] - cumulative[low]
        return (between - (marginals[value] + marginals[other]) / 2) ** 2

    return ordinal_distance


def _one_category_warning(statistic: str, categories: Iterable[Hashable]) -> str:
    only = next(iter(categories))
    return (
        f"{statistic} is null because every rating it reads is {only!r}, "
        "so chance agreement is 1 and the statistic is 0/0"
    )


# ---------------------------------------------------------------------------------------------
# Ratings from a Label Studio export
# ---------------------------------------------------------------------------------------------


class _WarningLog:
    """Warnings with repeats counted: each message is listed once with up to three places it occurred."""

    def __init__(self) -> None:
        self._places: dict[str, list[str]] = {}

    def add(self, message: str, place: str | None = None) -> None:
        places = self._places.setdefault(message, [])
        if place is not None:
            places.append(place)

    def messages(self) -> list[str]:
        return [_with_places(message, places) for message, places in self._places.items()]


def _with_places(message: str, places: list[str]) -> str:
    if not places:
        return message
    if len(places) <= MAX_WARNING_EXAMPLES:
        return f"{message} ({'; '.join(places)})"
    examples = "; ".join(places[:MAX_WARNING_EXAMPLES])
    return f"{message} ({len(places)} cases, first: {examples})"


@dataclass
class _Control:
    """The ratings of one control: item index -> rater -> category."""

    name: str
    result_type: str
    ratings: dict[int, dict[str, Category]] = field(default_factory=dict)
    updated: dict[tuple[int, str], str] = field(default_factory=dict)
    anonymous: set[str] = field(default_factory=set)
    warnings: _WarningLog = field(default_factory=_WarningLog)


@dataclass
class _Collection:
    controls: dict[str, _Control] = field(default_factory=dict)
    skipped_types: dict[str, str] = field(default_factory=dict)
    warnings: _WarningLog = field(default_factory=_WarningLog)


def _category(result_type: str, value: Any) -> Category | None:
    """Return the category of one result's `value`, or None for an empty selection.

    Raises ValueError, naming the expected shape, when the value is malformed.
    """
    if not isinstance(value, dict):
        raise ValueError("`value` is not an object")
    if result_type == "rating":
        number = value.get("rating")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError("`value.rating` is not a finite number")
        return float(number)
    if result_type == "pairwise":
        selected = value.get("selected")
        if not isinstance(selected, str):
            raise ValueError("`value.selected` is not a string")
        return selected
    return _selection_category(value.get(result_type), result_type)


def _selection_category(selection: Any, key: str) -> Category | None:
    """Turn a list of choices or paths into one category: a single entry itself, several a sorted tuple."""
    if not isinstance(selection, list):
        raise ValueError(f"`value.{key}` is not a list")
    entries: set[str] = set()
    for entry in selection:
        if isinstance(entry, str):
            entries.add(entry)
        elif isinstance(entry, list) and entry and all(isinstance(part, str) for part in entry):
            entries.add(PATH_SEPARATOR.join(entry))
        else:
            raise ValueError(f"`value.{key}` has an entry that is neither a string nor a list of strings")
    if not entries:
        return None
    if len(entries) == 1:
        return entries.pop()
    return tuple(sorted(entries))


def _rater(item: Item) -> str | None:
    """Return the rater name of an annotation or prediction, or None when it has no identity."""
    body = item.body
    if item.kind == KIND_ANNOTATION:
        completed_by = body.get("completed_by")
        if isinstance(completed_by, dict):
            completed_by = completed_by.get("email") or completed_by.get("id")
        identified = completed_by is not None and not isinstance(completed_by, bool) and completed_by != ""
    else:
        version = body.get("model_version")
        identified = isinstance(version, str) and version != ""
    return item.by if identified else None


def _collect(tasks: Any, include_predictions: bool) -> tuple[_Collection, int]:
    export = parse_export(tasks)
    collection = _Collection()
    for message in export.warnings:
        collection.warnings.add(message)
    for task in export.tasks:
        sources = [task.annotations, task.predictions] if include_predictions else [task.annotations]
        for items in sources:
            for position, item in enumerate(items):
                label = item.id if item.id is not None else f"at position {position}"
                place = f"task {task.key!r}, {item.kind} {label}"
                rater = _rater(item)
                # A rating without a rater identity gets a name of its own, so it never merges with another.
                name = rater if rater is not None else f"anonymous {task.index}:{item.kind}:{position}"
                _add_item(collection, _Rating(task.index, name, rater is None, item, place))
    return collection, len(export.tasks)


@dataclass(frozen=True)
class _Rating:
    """The source of one rating: the item (task index), the rater, and the annotation or prediction."""

    item_index: int
    rater: str
    anonymous: bool
    source: Item
    place: str


def _add_item(collection: _Collection, rating: _Rating) -> None:
    by_control: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    # parse_export checks that `result` is a list and flattens the pre-1.0 nested form.
    for result in rating.source.body["result"]:
        if not isinstance(result, dict) or not isinstance(result.get("from_name"), str):
            collection.warnings.add("a result without a `from_name` string was left out", rating.place)
            continue
        result_type = result.get("type")
        if result_type not in CATEGORICAL_TYPES:
            collection.skipped_types.setdefault(result["from_name"], str(result_type))
            continue
        by_control[result["from_name"]].append(result)

    for name, results in by_control.items():
        control = collection.controls.setdefault(name, _Control(name, results[0]["type"]))
        if len(results) > 1:
            control.warnings.add(
                "an annotation with several results for this control (per-region classification) gives no rating",
                rating.place,
            )
            continue
        _add_rating(control, rating, results[0])


def _add_rating(control: _Control, rating: _Rating, result: dict[str, Any]) -> None:
    if result["type"] != control.result_type:
        control.warnings.add(
            f"a result of type {result['type']!r} was left out because this control's type is {control.result_type!r}",
            rating.place,
        )
        return
    try:
        category = _category(control.result_type, result.get("value"))
    except ValueError as error:
        control.warnings.add(f"a malformed result was left out: {error}", rating.place)
        return
    if category is None:
        return
    if rating.anonymous:
        control.anonymous.add(rating.rater)

    raters = control.ratings.setdefault(rating.item_index, {})
    key = (rating.item_index, rating.rater)
    # ISO 8601 timestamps from one export share a format, so they order as strings.
    updated = str(rating.source.body.get("updated_at") or rating.source.body.get("created_at") or "")
    if rating.rater in raters:
        control.warnings.add(
            "a rater has several annotations on one task, and the latest updated one gives the rating", rating.place
        )
        if updated < control.updated[key]:
            return
    raters[rating.rater] = category
    control.updated[key] = updated


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def project_statistics(tasks: list[dict[str, Any]], *, include_predictions: bool = False) -> dict[str, Any]:
    """Compute the agreement statistics of every categorical control in a Label Studio export.

    Returns a JSON-ready dict `{"controls": [...], "warnings": [...]}` with one entry per control,
    sorted by control name. Raises InvalidInputError when `tasks` is not a Label Studio export.
    """
    collection, task_count = _collect(tasks, include_predictions)
    controls = [_control_report(collection.controls[name]) for name in sorted(collection.controls)]
    warnings = collection.warnings.messages()
    for name, result_type in sorted(collection.skipped_types.items()):
        if name not in collection.controls:
            warnings.append(
                f"control {name!r} of type {result_type!r} has no statistics; "
                f"they cover the types {', '.join(CATEGORICAL_TYPES)}"
            )
    if not controls:
        warnings.append(
            f"no {', '.join(CATEGORICAL_TYPES)} ratings were found in {_plural(task_count, 'task')}, "
            "so there are no statistics"
        )
    logger.info("computed statistics: %d tasks, %d controls", task_count, len(controls))
    return {"controls": controls, "warnings": warnings}


def _control_report(control: _Control) -> dict[str, Any]:
    units = [list(raters.values()) for raters in control.ratings.values()]
    warnings = control.warnings
    single = sum(1 for values in units if len(values) == 1)
    if single:
        warnings.add(f"items with a single rating, which enter no statistic: {single} of {len(units)}")
    if control.anonymous:
        warnings.add(
            f"{_plural(len(control.anonymous), 'rating')} from annotations without `completed_by` or predictions "
            "without `model_version` count toward every statistic except Cohen's kappa"
        )

    percent = _noted(percent_agreement(units), warnings)
    fleiss = _noted(fleiss_kappa(units), warnings)
    alpha: dict[str, float | None] = {"nominal": None, "ordinal": None, "interval": None}
    if control.result_type in NUMERIC_TYPES:
        for level in ("nominal", "ordinal", "interval"):
            alpha[level] = _noted(krippendorff_alpha(units, level), warnings, level)
    else:
        alpha["nominal"] = _noted(krippendorff_alpha(units, "nominal"), warnings)

    identified = {rater for ratings in control.ratings.values() for rater in ratings} - control.anonymous
    raters = sorted(identified, key=_natural_key)
    return {
        "control": control.name,
        "type": control.result_type,
        "items": len(units),
        "raters": raters,
        "percent_agreement": percent,
        "cohen_kappa": _cohen_pairs(control, raters, warnings),
        "fleiss_kappa": fleiss,
        "krippendorff_alpha": alpha,
        "warnings": warnings.messages(),
    }


def _cohen_pairs(control: _Control, raters: list[str], warnings: _WarningLog) -> list[dict[str, Any]]:
    by_rater: defaultdict[str, dict[int, Category]] = defaultdict(dict)
    for item_index, ratings in control.ratings.items():
        for rater, category in ratings.items():
            by_rater[rater][item_index] = category

    pairs = []
    for first, second in itertools.combinations(raters, 2):
        smaller, larger = sorted((by_rater[first], by_rater[second]), key=len)
        shared = sorted(index for index in smaller if index in larger)
        kappa = cohen_kappa([by_rater[first][i] for i in shared], [by_rater[second][i] for i in shared])
        pairs.append(
            {
                "first": first,
                "second": second,
                "kappa": _noted(kappa, warnings, f"{first} and {second}"),
                "items": len(shared),
            }
        )
    return pairs


def _natural_key(name: str) -> list[str | int]:
    """Sort key that orders the digit runs of a name by value, so "annotator2" comes before "annotator10"."""
    parts: list[str | int] = []
    for position, part in enumerate(re.split(r"(\d+)", name)):
        parts.append(int(part) if position % 2 else part)
    return parts


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _noted(statistic: Statistic, warnings: _WarningLog, place: str | None = None) -> float | None:
    for message in statistic.warnings:
        warnings.add(message, place)
    return statistic.value
