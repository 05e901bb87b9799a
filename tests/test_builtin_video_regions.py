"""Tests for the videorectangle built-in: keyframe interpolation, track segments and tube IoU."""

from __future__ import annotations

import itertools
import random
import types
from typing import Any

import pytest
from builtin_loading import corpus_annotation_sets, load_builtin
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import Polygon as ShapelyPolygon

from custom_metrics import builtins


@pytest.fixture(scope="module")
def metric() -> types.ModuleType:
    return load_builtin("videorectangle")


def key(
    frame: int, x: float, y: float = 10, w: float = 10, h: float = 10, enabled: bool = True, **kw: float
) -> dict[str, Any]:
    return {"frame": frame, "enabled": enabled, "x": x, "y": y, "width": w, "height": h, "rotation": 0, **kw}


def track(
    sequence: list[dict[str, Any]],
    label: str = "Car",
    rid: str = "t1",
    frames_count: int | None = None,
    size: tuple[float, float] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {"sequence": sequence, "labels": [label]}
    if frames_count is not None:
        value["framesCount"] = frames_count
    result: dict[str, Any] = {
        "id": rid,
        "from_name": "box",
        "to_name": "video",
        "type": "videorectangle",
        "value": value,
    }
    if size is not None:
        result["original_width"], result["original_height"] = size
    return result


def ann(*results: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(results)}


def test_track_interpolates_between_keyframes(metric: types.ModuleType) -> None:
    sparse = track([key(1, 0), key(5, 40, enabled=False)])
    dense = track([key(f, 10 * (f - 1)) for f in range(1, 5)] + [key(5, 40, enabled=False)], rid="t2")
    assert metric.agreement(ann(sparse), ann(dense)) == pytest.approx(1.0, abs=1e-12)


def test_track_disabled_keyframe_ends_segment(metric: types.ModuleType) -> None:
    # Both boxes stand still; the second track is visible on frames 1 and 5 only, the first on frames 1-5.
    continuous = track([key(1, 0), key(5, 0, enabled=False)])
    gaps = track([key(1, 0, enabled=False), key(5, 0, enabled=False)], rid="t2")
    assert metric.agreement(ann(continuous), ann(gaps)) == pytest.approx(2 / 5, abs=1e-12)


def test_track_last_enabled_keyframe_holds_until_frames_count(metric: types.ModuleType) -> None:
    held = track([key(1, 0)], frames_count=4)
    single = track([key(1, 0, enabled=False)], rid="t2", frames_count=4)
    assert metric.agreement(ann(held), ann(single)) == pytest.approx(1 / 4, abs=1e-12)


def test_track_hold_last_keyframe_off() -> None:
    metric = load_builtin("videorectangle", {"hold_last_keyframe": False})
    held = track([key(1, 0)], frames_count=4)
    single = track([key(1, 0, enabled=False)], rid="t2", frames_count=4)
    assert metric.agreement(ann(held), ann(single)) == 1.0


def test_tube_iou_sums_intersections_over_unions_across_frames(metric: types.ModuleType) -> None:
    # Frame 1: identical boxes (I 100, U 100). Frame 2: shifted by 5 (I 50, U 150). Frame 3: only one box (U 100).
    a = track([key(1, 0), key(2, 0), key(3, 0, enabled=False)])
    b = track([key(1, 0), key(2, 5, enabled=False)], rid="t2")
    assert metric.agreement(ann(a), ann(b)) == pytest.approx(150 / 350, abs=1e-12)


def test_rotated_box_rotates_in_pixels(metric: types.ModuleType) -> None:
    # The image built-in's required case, on a video frame: 0 vs 45 degrees on 200x100 gives 0.142857.
    a = track([key(1, 40, 40, 20, 20, enabled=False)], size=(200, 100))
    b = track([key(1, 40, 40, 20, 20, enabled=False, rotation=45)], rid="t2", size=(200, 100))
    assert metric.agreement(ann(a), ann(b)) == pytest.approx(0.142857, abs=1e-6)


def test_rotated_boxes_match_shapely_per_frame(metric: types.ModuleType) -> None:
    rng = random.Random(2)
    for _ in range(100):
        size = (rng.uniform(100, 1000), rng.uniform(100, 1000))
        boxes = [(rng.uniform(20, 50), rng.uniform(20, 50), rng.uniform(5, 30), rng.uniform(5, 30)) for _ in range(2)]
        angles = [rng.uniform(0, 360) for _ in range(2)]
        shapes = []
        for (x, y, w, h), angle in zip(boxes, angles, strict=True):
            sx, sy = size[0] / 100, size[1] / 100
            corners = [(x * sx, y * sy), ((x + w) * sx, y * sy), ((x + w) * sx, (y + h) * sy), (x * sx, (y + h) * sy)]
            shapes.append(affinity.rotate(ShapelyPolygon(corners), angle, origin=(x * sx, y * sy)))
        expected = shapes[0].intersection(shapes[1]).area / shapes[0].union(shapes[1]).area
        a = track([key(1, *boxes[0], enabled=False, rotation=angles[0])], size=size)
        b = track([key(1, *boxes[1], enabled=False, rotation=angles[1])], rid="t2", size=size)
        assert metric.agreement(ann(a), ann(b)) == pytest.approx(expected, abs=1e-9)


def test_negative_height_box_is_the_same_box_flipped(metric: types.ModuleType) -> None:
    a = track([key(1, 10, 30, 10, -20, enabled=False)])
    b = track([key(1, 10, 10, 10, 20, enabled=False)], rid="t2")
    assert metric.agreement(ann(a), ann(b)) == pytest.approx(1.0, abs=1e-12)


def test_tracks_need_matching_labels(metric: types.ModuleType) -> None:
    a = ann(track([key(1, 0, enabled=False)], rid="a1"), track([key(1, 50, enabled=False)], label="Bus", rid="a2"))
    b = ann(track([key(1, 0, enabled=False)], rid="b1"), track([key(1, 50, enabled=False)], label="Car", rid="b2"))
    # a1-b1 match (1.0); a2 (Bus) and b2 (Car) do not.
    assert metric.agreement(a, b) == pytest.approx(2 / 4, abs=1e-12)
    assert metric.agreement(a, b, per_label=True) == {"Bus": 0.0, "Car": pytest.approx(2 / 3, abs=1e-12)}


def test_f1_counts_tracks_over_threshold() -> None:
    metric = load_builtin("videorectangle", {"region_score": "f1", "iou_threshold": 0.5})
    a = track([key(1, 0, enabled=False)])
    b = track([key(1, 2, enabled=False)], rid="t2")  # IoU 80 / 120
    assert metric.agreement(ann(a), ann(b)) == 1.0


def test_empty_annotations_score_1(metric: types.ModuleType) -> None:
    assert metric.agreement({"result": []}, {}) == 1.0
    assert metric.agreement({}, {}, per_label=True) == {}


def test_empty_against_track_scores_0(metric: types.ModuleType) -> None:
    assert metric.agreement(ann(), ann(track([key(1, 0)]))) == 0.0


def test_label_weight_zero_leaves_track_out() -> None:
    metric = load_builtin("videorectangle", {"label_weights": {"Bus": 0}})
    assert metric.agreement(ann(track([key(1, 0)], label="Bus")), ann()) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["value"].pop("sequence"), r"'t1'.*'box'.*value\.sequence"),
        (lambda r: r["value"]["sequence"][0].pop("x"), r"'t1'.*'box'.*sequence\[0\]: x"),
        (lambda r: r["value"]["sequence"][0].update(frame=-1), r"'t1'.*sequence\[0\]: frame"),
        (lambda r: r["value"]["sequence"][0].update(enabled="yes"), r"'t1'.*sequence\[0\]: enabled"),
        (lambda r: r["value"].update(framesCount=2.5), r"'t1'.*framesCount"),
        (lambda r: r["value"].update(labels="Car"), r"'t1'.*value\.labels"),
    ],
)
def test_malformed_track_names_region(metric: types.ModuleType, change: Any, message: str) -> None:
    region = track([key(1, 0)])
    change(region)
    with pytest.raises(ValueError, match=message):
        metric.agreement(ann(region), ann())


tracks = st.builds(
    lambda frames, x, label: track([key(f, x + f) for f in sorted(set(frames))], label=label),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.floats(0, 60),
    st.sampled_from(["Car", "Bus"]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(tracks, max_size=3), st.lists(tracks, max_size=3))
def test_agreement_is_symmetric(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    metric = load_builtin("videorectangle")
    a, b = ann(*first), ann(*second)
    assert abs(metric.agreement(a, b) - metric.agreement(b, a)) <= 1e-12
    per_ab, per_ba = metric.agreement(a, b, per_label=True), metric.agreement(b, a, per_label=True)
    assert per_ab.keys() == per_ba.keys()
    assert all(abs(per_ab[k] - per_ba[k]) <= 1e-12 for k in per_ab)


@pytest.mark.parametrize("file_name", ["videorectangle_lsf-example.json", "videorectangle_2predictions_mlbackend.json"])
def test_agreement_on_corpus_file_pairs(metric: types.ModuleType, file_name: str) -> None:
    for task_annotations in corpus_annotation_sets(file_name):
        for a in task_annotations:
            assert metric.agreement(a, a) == 1.0
        for a, b in itertools.combinations(task_annotations, 2):
            score = metric.agreement(a, b)
            assert 0.0 <= score <= 1.0
            assert abs(score - metric.agreement(b, a)) <= 1e-12


def test_agreement_two_tracker_runs_agree_partly(metric: types.ModuleType) -> None:
    run_1, run_2 = corpus_annotation_sets("videorectangle_2predictions_mlbackend.json")[0]
    assert 0.0 < metric.agreement(run_1, run_2) < 1.0


def test_render_defaults_reproduces_source() -> None:
    assert builtins.BUILTIN_FILES["videorectangle"] == "video_regions.py"
    assert builtins.render("videorectangle") == builtins.source("videorectangle")
