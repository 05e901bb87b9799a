"""Tests for the image region built-in (rectangles, polygons, ellipses, brush masks, keypoints)."""

from __future__ import annotations

import itertools
import json
import math
import random
import types
from typing import Any

import pytest
from builtin_loading import CORPUS, corpus_annotation_sets, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import Polygon as ShapelyPolygon

from custom_metrics import builtins
from custom_metrics.errors import InvalidInputError

NAMES = ("rectanglelabels", "polygonlabels", "ellipselabels", "brushlabels", "keypointlabels")


@pytest.fixture(scope="module")
def metric() -> types.ModuleType:
    return load_builtin("rectanglelabels")


def rect(
    x: float = 40,
    y: float = 40,
    w: float = 20,
    h: float = 20,
    rotation: float = 0,
    size: tuple[float, float] | None = (100, 100),
    label: str = "A",
    rid: str = "r1",
    control: str = "box",
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": rid,
        "from_name": control,
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    }
    if size is not None:
        result["original_width"], result["original_height"] = size
    return result


def polygon(points: list[tuple[float, float]], label: str = "A", rid: str = "p1") -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": "poly",
        "to_name": "image",
        "type": "polygonlabels",
        "value": {"points": [list(p) for p in points], "polygonlabels": [label]},
    }


def ellipse(
    cx: float, cy: float, rx: float, ry: float, rotation: float, size: tuple[float, float], rid: str = "e1"
) -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": "ell",
        "to_name": "image",
        "type": "ellipselabels",
        "original_width": size[0],
        "original_height": size[1],
        "value": {"x": cx, "y": cy, "radiusX": rx, "radiusY": ry, "rotation": rotation, "ellipselabels": ["A"]},
    }


def keypoint(x: float, y: float, size: tuple[float, float] | None = (200, 100), rid: str = "k1") -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": rid,
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["Nose"]},
    }
    if size is not None:
        result["original_width"], result["original_height"] = size
    return result


def ann(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


# ---------------------------------------------------------------- Label Studio RLE written for the tests


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, count: int) -> None:
        self.bits.extend((value >> (count - 1 - i)) & 1 for i in range(count))

    def to_bytes(self) -> list[int]:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return [int("".join(map(str, padded[i : i + 8])), 2) for i in range(0, len(padded), 8)]


def encode_rle(alpha: list[int], literal_first: int = 0) -> list[int]:
    """RGBA bytes (all four channels equal to `alpha`) packed as Label Studio RLE.

    The first `literal_first` values go out as one literal chunk, the rest as repeat chunks, so the
    decoder's two branches both run.
    """
    values = [a for a in alpha for _ in range(4)]
    out = BitWriter()
    out.write(len(values), 32)
    out.write(7, 5)  # 8-bit words
    for width in (4, 8, 12, 16):
        out.write(width - 1, 4)
    if literal_first:
        out.write(0, 1)
        out.write(3, 2)
        out.write(literal_first - 1, 16)
        for value in values[:literal_first]:
            out.write(value, 8)
    i = literal_first
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i] and j - i < 65536:
            j += 1
        out.write(1, 1)
        out.write(3, 2)
        out.write(j - i - 1, 16)
        out.write(values[i], 8)
        i = j
    return out.to_bytes()


def brush(alpha: list[int], size: tuple[int, int], label: str = "A", rid: str = "b1", **kw: int) -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": size[0],
        "original_height": size[1],
        "value": {"format": "rle", "rle": encode_rle(alpha, **kw), "brushlabels": [label]},
    }


def reference_alpha(rle: list[int]) -> list[int]:
    """A plain bit-by-bit decoder of the same format, used to check the built-in's run decoder."""
    bits = "".join(f"{b:08b}" for b in rle)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        pos += n
        return int(bits[pos - n : pos], 2)

    count, word = read(32), read(5) + 1
    widths = [read(4) + 1 for _ in range(4)]
    values: list[int] = []
    while len(values) < count:
        repeat = read(1)
        length = 1 + read(widths[read(2)])
        if repeat:
            values.extend([read(word)] * length)
        else:
            values.extend(read(word) for _ in range(length))
    return values[3::4]


# ---------------------------------------------------------------- required rotated rectangles


def test_rectangle_rotated_90_square_image(metric: types.ModuleType) -> None:
    assert metric.agreement(ann(rect(rotation=0)), ann(rect(rotation=90))) == 0.0


def test_rectangle_rotated_45_square_image(metric: types.ModuleType) -> None:
    assert metric.agreement(ann(rect(rotation=0)), ann(rect(rotation=45))) == pytest.approx(0.261204, abs=1e-6)


def test_rectangle_rotated_45_wide_image(metric: types.ModuleType) -> None:
    score = metric.agreement(ann(rect(rotation=0, size=(200, 100))), ann(rect(rotation=45, size=(200, 100))))
    assert score == pytest.approx(0.142857, abs=1e-6)


def test_rectangle_rotated_without_image_size_names_region(metric: types.ModuleType) -> None:
    with pytest.raises(ValueError, match=r"'r9'.*'box'.*original_width"):
        metric.agreement(ann(rect(rotation=30, size=None, rid="r9")), ann(rect()))


# ---------------------------------------------------------------- IoU against shapely


def shapely_rect(x: float, y: float, w: float, h: float, rotation: float, size: tuple[float, float]) -> Any:
    sx, sy = size[0] / 100, size[1] / 100
    box = ShapelyPolygon(
        [(x * sx, y * sy), ((x + w) * sx, y * sy), ((x + w) * sx, (y + h) * sy), (x * sx, (y + h) * sy)]
    )
    # shapely's positive angle maps (1, 0) towards +y, which is clockwise on an image whose y grows downwards.
    return affinity.rotate(box, rotation, origin=(x * sx, y * sy))


def shapely_iou(a: Any, b: Any) -> float:
    union = a.union(b).area
    return a.intersection(b).area / union if union else 0.0


def test_rectangle_iou_matches_shapely_on_random_rotated_boxes(metric: types.ModuleType) -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        size = (rng.uniform(50, 2000), rng.uniform(50, 2000))
        boxes = [(rng.uniform(10, 60), rng.uniform(10, 60), rng.uniform(5, 40), rng.uniform(5, 40)) for _ in range(2)]
        angles = [rng.choice([0, 90, 180, rng.uniform(-360, 360)]) for _ in range(2)]
        expected = shapely_iou(*(shapely_rect(*b, r, size) for b, r in zip(boxes, angles, strict=True)))
        got = metric.agreement(
            ann(rect(*boxes[0], rotation=angles[0], size=size)), ann(rect(*boxes[1], rotation=angles[1], size=size))
        )
        assert got == pytest.approx(expected, abs=1e-9)
        checked += expected > 0
    assert checked > 50  # enough overlapping pairs to exercise the clipping


def random_star_polygon(rng: random.Random) -> list[tuple[float, float]]:
    """A simple polygon, often concave: vertices at increasing angles around a centre, random radii."""
    cx, cy = rng.uniform(30, 70), rng.uniform(30, 70)
    count = rng.randint(4, 24)
    # Gaps between angles stay below pi, so the polygon is star-shaped around the centre, hence simple.
    angles = [(i + rng.uniform(0, 0.9)) * 2 * math.pi / count for i in range(count)]
    return [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in angles for r in [rng.uniform(3, 30)]]


def test_polygon_iou_matches_shapely_on_random_simple_polygons(metric: types.ModuleType) -> None:
    rng = random.Random(11)
    checked = 0
    for _ in range(200):
        p, q = random_star_polygon(rng), random_star_polygon(rng)
        assert ShapelyPolygon(p).is_valid
        assert ShapelyPolygon(q).is_valid
        expected = shapely_iou(ShapelyPolygon(p), ShapelyPolygon(q))
        assert metric.agreement(ann(polygon(p)), ann(polygon(q))) == pytest.approx(expected, abs=1e-9)
        checked += expected > 0
    assert checked > 50  # enough overlapping pairs to exercise the clipping


def test_polygon_iou_against_rotated_rectangle_matches_shapely(metric: types.ModuleType) -> None:
    rng = random.Random(5)
    for _ in range(50):
        p = random_star_polygon(rng)
        box = (rng.uniform(20, 50), rng.uniform(20, 50), rng.uniform(10, 40), rng.uniform(10, 40), rng.uniform(0, 360))
        shape = rect(*box, size=(100, 100))
        shape["from_name"] = "poly"
        expected = shapely_iou(ShapelyPolygon(p), shapely_rect(*box, (100, 100)))
        assert metric.agreement(ann(polygon(p)), ann(shape)) == pytest.approx(expected, abs=1e-9)


def shapely_ellipse(cx: float, cy: float, rx: float, ry: float, rotation: float, size: tuple[float, float]) -> Any:
    sx, sy = size[0] / 100, size[1] / 100
    circle = ShapelyPoint(cx * sx, cy * sy).buffer(1.0, quad_segs=4096)
    return affinity.rotate(affinity.scale(circle, rx * sx, ry * sy), rotation, origin=(cx * sx, cy * sy))


# The built-in draws an ellipse as a 256-gon with the ellipse's area. IoU does not change under an
# affine map, and in the frame where an ellipse is a circle of radius r that polygon stays within
# delta = r * (pi / 256)**2 / 2 (about 7.6e-5 r) of the circle. Each shape's error band then has area
# at most 2 * pi * r * delta = 1.5e-4 of its own area, so the intersection and the union each move by
# at most 1.5e-4 * (A1 + A2) <= 3e-4 * union, and the IoU by at most 6e-4. The reference, drawn with
# 16384 vertices, adds 256 times less. 1e-3 covers that bound.
ELLIPSE_TOLERANCE = 1e-3


def test_ellipse_iou_matches_shapely_within_polygon_tolerance(metric: types.ModuleType) -> None:
    rng = random.Random(3)
    worst = 0.0
    for _ in range(40):
        size = (rng.uniform(100, 1000), rng.uniform(100, 1000))
        shapes = [
            (rng.uniform(35, 65), rng.uniform(35, 65), rng.uniform(5, 25), rng.uniform(5, 25), rng.uniform(0, 360))
            for _ in range(2)
        ]
        expected = shapely_iou(*(shapely_ellipse(*s, size) for s in shapes))
        got = metric.agreement(ann(ellipse(*shapes[0], size)), ann(ellipse(*shapes[1], size, rid="e2")))
        worst = max(worst, abs(got - expected))
    assert worst < ELLIPSE_TOLERANCE


def test_ellipse_same_shape_scores_1(metric: types.ModuleType) -> None:
    shape = ellipse(50, 50, 10, 20, 33, (300, 200))
    assert metric.agreement(ann(shape), ann(dict(shape, id="other"))) == 1.0


# ---------------------------------------------------------------- matching and scores


def test_hungarian_matches_brute_force_on_random_matrices(metric: types.ModuleType) -> None:
    rng = random.Random(1)
    for _ in range(200):
        n, m = rng.randint(1, 5), rng.randint(1, 5)
        profit = [[rng.choice([0.0, rng.random()]) for _ in range(m)] for _ in range(n)]
        pairs = metric._hungarian(profit)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        best = max(
            sum(profit[i][j] for i, j in zip(rows, cols, strict=True))
            for rows in itertools.permutations(range(n), min(n, m))
            for cols in itertools.permutations(range(m), min(n, m))
        )
        assert sum(profit[i][j] for i, j in pairs) == pytest.approx(best, abs=1e-12)


def test_agreement_unmatched_region_counts_against_score(metric: types.ModuleType) -> None:
    # Boxes [0,20]x[0,20] and [10,30]x[0,20] overlap by a third; the extra box has no partner.
    a = ann(rect(0, 0, 20, 20, rid="a"), rect(60, 60, 10, 10, rid="extra"))
    b = ann(rect(10, 0, 20, 20, rid="b"))
    assert metric.agreement(a, b) == pytest.approx(2 * (1 / 3) / 3, abs=1e-12)


def test_agreement_labels_must_agree_for_a_match(metric: types.ModuleType) -> None:
    assert metric.agreement(ann(rect(label="Car")), ann(rect(label="Bus"))) == 0.0


def test_agreement_hungarian_beats_greedy(metric: types.ModuleType) -> None:
    # Greedy by IoU would pair a1-b1 (IoU 0.6) and leave a2 and b2 unmatched; Hungarian pairs a1-b2 and a2-b1.
    a = ann(rect(0, 0, 10, 10, rid="a1"), rect(5, 0, 10, 10, rid="a2"))
    b = ann(rect(2.5, 0, 10, 10, rid="b1"), rect(-5, 0, 10, 10, rid="b2"))
    pairs = [0.6, 1 / 3]  # a2-b1 is [5,15] vs [2.5,12.5]: 7.5/12.5; a1-b2 is [0,10] vs [-5,5]: 5/15
    assert metric.agreement(a, b) == pytest.approx(2 * sum(pairs) / 4, abs=1e-12)


def test_agreement_f1_counts_pairs_over_iou_threshold() -> None:
    metric = load_builtin("rectanglelabels", {"region_score": "f1", "iou_threshold": 0.5})
    a = ann(rect(0, 0, 20, 20, rid="a1"), rect(50, 50, 20, 20, rid="a2"))
    b = ann(rect(2, 0, 20, 20, rid="b1"), rect(60, 50, 20, 20, rid="b2"))  # IoUs 0.818 and 0.333
    assert metric.agreement(a, b) == pytest.approx(2 * 1 / 4, abs=1e-12)


def test_agreement_per_label_scores_each_label(metric: types.ModuleType) -> None:
    a = ann(rect(0, 0, 20, 20, label="Car", rid="a1"), rect(50, 50, 10, 10, label="Bus", rid="a2"))
    b = ann(rect(0, 0, 20, 20, label="Car", rid="b1"))
    assert metric.agreement(a, b, per_label=True) == {"Bus": 0.0, "Car": 1.0}


def test_agreement_label_weight_zero_leaves_label_out() -> None:
    metric = load_builtin("rectanglelabels", {"label_weights": {"Bus": 0}})
    a = ann(rect(0, 0, 20, 20, label="Car", rid="a1"), rect(50, 50, 10, 10, label="Bus", rid="a2"))
    b = ann(rect(0, 0, 20, 20, label="Car", rid="b1"))
    assert metric.agreement(a, b) == 1.0


def test_agreement_control_weights_weight_the_control_mean() -> None:
    metric = load_builtin("rectanglelabels", {"control_weights": {"box": 3, "other": 1}})
    a = ann(rect(rid="a1"), rect(control="other", rid="a2"))
    b = ann(rect(rid="b1"))
    assert metric.agreement(a, b) == pytest.approx(3 / 4, abs=1e-12)


def test_agreement_item_index_separates_images(metric: types.ModuleType) -> None:
    first, second = rect(rid="a"), rect(rid="b")
    second["item_index"] = 1
    assert metric.agreement(ann(first), ann(second)) == 0.0


def test_agreement_unlabeled_shape_paired_labels(metric: types.ModuleType) -> None:
    shape = {
        "id": "s1",
        "from_name": "rect",
        "to_name": "image",
        "type": "rectangle",
        "value": {"x": 1, "y": 1, "width": 5, "height": 5},
    }
    labels = {
        "id": "s1",
        "from_name": "labels",
        "to_name": "image",
        "type": "labels",
        "value": {"x": 1, "labels": ["Moon"]},
    }
    other = dict(shape, id="s2")
    assert metric.agreement(ann(shape, labels), ann(other), per_label=True) == {"(unlabeled)": 0.0, "Moon": 0.0}


# ---------------------------------------------------------------- keypoints


def test_keypoint_distance_is_relative_to_image_diagonal() -> None:
    metric = load_builtin("keypointlabels", {"keypoint_threshold": 0.1})
    # 10% of 200 px = 20 px apart on a 200x100 image whose diagonal is 223.6 px.
    expected = 1 - (20 / math.hypot(200, 100)) / 0.1
    assert metric.agreement(ann(keypoint(50, 50)), ann(keypoint(60, 50))) == pytest.approx(expected, abs=1e-12)


def test_keypoint_beyond_threshold_does_not_match() -> None:
    metric = load_builtin("keypointlabels", {"keypoint_threshold": 0.05})
    assert metric.agreement(ann(keypoint(10, 10)), ann(keypoint(40, 40))) == 0.0


# ---------------------------------------------------------------- brush masks


def test_brush_iou_counts_pixels_with_alpha_over_threshold(metric: types.ModuleType) -> None:
    size = (8, 4)
    first = [255 if i < 16 else 0 for i in range(32)]  # top half
    second = [255 if i % 8 < 4 else 0 for i in range(32)]  # left half
    second[31] = 100  # one faint pixel, under the alpha threshold
    # Intersection: top-left quarter (8 px); union 16 + 16 - 8 = 24 px; the faint pixel does not count.
    score = metric.agreement(ann(brush(first, size)), ann(brush(second, size, literal_first=40)))
    assert score == pytest.approx(8 / 24, abs=1e-12)


def test_brush_decoder_matches_reference_decoder(metric: types.ModuleType) -> None:
    data = json.loads((CORPUS / "brushlabels_rle_predictions_mlbackend.json").read_text(encoding="utf-8"))
    for result in data[0]["predictions"][0]["result"]:
        alpha = reference_alpha(result["value"]["rle"])
        mask = metric._decode_rle(result["value"]["rle"], 128, "test")
        assert mask.pixels == result["original_width"] * result["original_height"]
        assert mask.area == sum(a >= 128 for a in alpha)


def test_brush_truncated_rle_names_region(metric: types.ModuleType) -> None:
    broken = brush([255] * 32, (8, 4), rid="b7")
    broken["value"]["rle"] = broken["value"]["rle"][:6]
    with pytest.raises(ValueError, match=r"'b7'.*'brush'.*rle"):
        metric.agreement(ann(broken), ann())


def test_brush_size_mismatch_names_region(metric: types.ModuleType) -> None:
    wrong = brush([255] * 32, (8, 4), rid="b8")
    wrong["original_width"] = 9
    with pytest.raises(ValueError, match=r"'b8'.*9x4"):
        metric.agreement(ann(wrong), ann())


# ---------------------------------------------------------------- empty, symmetry, malformed


@pytest.mark.parametrize("name", NAMES)
def test_agreement_empty_annotations_score_1(name: str) -> None:
    metric = load_builtin(name)
    assert metric.agreement({"result": []}, {}) == 1.0
    assert metric.agreement({"result": []}, {"result": []}, per_label=True) == {}


def test_agreement_empty_against_regions_scores_0(metric: types.ModuleType) -> None:
    assert metric.agreement(ann(), ann(rect())) == 0.0
    assert metric.agreement(ann(rect()), ann()) == 0.0


def test_agreement_ignores_other_result_types(metric: types.ModuleType) -> None:
    choice = {"id": "c", "from_name": "cls", "to_name": "image", "type": "choices", "value": {"choices": ["x"]}}
    assert metric.agreement(ann(choice), ann()) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["value"].pop("x"), r"'r1'.*'box'.*value\.x"),
        (lambda r: r["value"].update(width="wide"), r"'r1'.*'box'.*value\.width"),
        (lambda r: r["value"].update(rectanglelabels="Car"), r"'r1'.*'box'.*rectanglelabels"),
        (lambda r: r.pop("from_name"), r"'r1'.*from_name"),
        (lambda r: r.update(value=[1]), r"'r1'.*value must be an object"),
        (lambda r: r.update(original_width=-3), r"'r1'.*original_width"),
        (lambda r: r.pop("type"), r"result #0 \(id 'r1'\) has no 'type'"),
    ],
)
def test_agreement_malformed_rectangle_names_region(metric: types.ModuleType, change: Any, message: str) -> None:
    region = rect()
    change(region)
    with pytest.raises(ValueError, match=message):
        metric.agreement(ann(region), ann(rect()))


def test_agreement_polygon_with_two_points_names_region(metric: types.ModuleType) -> None:
    with pytest.raises(ValueError, match=r"'p5'.*'poly'.*at least 3"):
        metric.agreement(ann(polygon([(0, 0), (5, 5)], rid="p5")), ann())


def test_agreement_polygon_point_not_a_pair_names_region(metric: types.ModuleType) -> None:
    bad = polygon([(0, 0), (5, 5), (5, 0)], rid="p6")
    bad["value"]["points"][1] = [5]
    with pytest.raises(ValueError, match=r"'p6'.*points\[1\]"):
        metric.agreement(ann(bad), ann())


def test_agreement_bad_option_value_raises() -> None:
    with pytest.raises(InvalidInputError, match="region_score"):
        load_builtin("rectanglelabels", {"region_score": "dice"})


boxes = st.builds(
    lambda x, y, w, h, r, label, control: rect(x, y, w, h, r, (300, 200), label, control=control),
    st.floats(0, 80),
    st.floats(0, 80),
    st.floats(1, 30),
    st.floats(1, 30),
    st.sampled_from([0, 0, 30, 90, 200]),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["box", "box2"]),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(boxes, max_size=5), st.lists(boxes, max_size=5))
def test_agreement_is_symmetric(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    metric = load_builtin("rectanglelabels")
    a, b = ann(*first), ann(*second)
    assert abs(metric.agreement(a, b) - metric.agreement(b, a)) <= 1e-12
    per_ab, per_ba = metric.agreement(a, b, per_label=True), metric.agreement(b, a, per_label=True)
    assert per_ab.keys() == per_ba.keys()
    assert all(abs(per_ab[k] - per_ba[k]) <= 1e-12 for k in per_ab)


# ---------------------------------------------------------------- real Label Studio files


def corpus_files() -> list[str]:
    types_ = (
        "rectanglelabels",
        "polygonlabels",
        "ellipselabels",
        "brushlabels",
        "keypointlabels",
        "rectangle",
        "brush",
    )
    found = {name for t in types_ for name in builtins_corpus_files(t)}
    return sorted(found)


def builtins_corpus_files(result_type: str) -> list[str]:
    needle = f'"type": "{result_type}"'
    return [path.name for path in CORPUS.glob("*.json") if needle in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("file_name", corpus_files())
def test_agreement_on_corpus_file_pairs(metric: types.ModuleType, file_name: str) -> None:
    for task_annotations in corpus_annotation_sets(file_name):
        for a in task_annotations:
            assert metric.agreement(a, a) == 1.0
        for a, b in itertools.combinations(task_annotations, 2):
            score = metric.agreement(a, b)
            assert 0.0 <= score <= 1.0
            assert abs(score - metric.agreement(b, a)) <= 1e-12
            assert all(0.0 <= value <= 1.0 for value in metric.agreement(a, b, per_label=True).values())


def test_agreement_corpus_three_annotators_differ_from_each_other(metric: types.ModuleType) -> None:
    annotations = corpus_annotation_sets("rectanglelabels_3annotators_prediction_evalme.json")[0]
    scores = [metric.agreement(a, b) for a, b in itertools.combinations(annotations, 2)]
    assert any(0.0 < s < 1.0 for s in scores)


def test_agreement_corpus_image_tools_scores_every_shape_kind(metric: types.ModuleType) -> None:
    annotation = corpus_annotation_sets("mixed_image_tools_shapes_labels_brush_relations_lsf-example.json")[0][0]
    without_brush = {"result": [r for r in annotation["result"] if r.get("from_name") != "brush"]}
    # Six controls (rect, ellipse, kp, polygon, brush, rectangle-labels): without the brush, five score 1.
    assert metric.agreement(annotation, without_brush) == pytest.approx(5 / 6, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_render_defaults_reproduces_source(name: str) -> None:
    assert builtins.BUILTIN_FILES[name] == "image_regions.py"
    assert builtins.render(name) == builtins.source(name)
