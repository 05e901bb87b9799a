"""Agreement on video object tracks (videorectangle results).

Each track's box on every frame comes from its keyframes (`value.sequence`): between a keyframe
and the next one, x, y, width, height and rotation are interpolated linearly. A keyframe with
`enabled: false` shows the box on its own frame only and ends that segment of the track. After the
last keyframe, if it is enabled, the box stays in place up to `framesCount` (`hold_last_keyframe`).
Rotation (degrees clockwise around the top-left corner) is applied in pixels when the result has
original_width and original_height, else in percent of the frame.
Two tracks compare by their tube IoU: the sum over frames of the boxes' intersection areas divided
by the sum of their union areas, over the frames where either track has a box.
Matching: Hungarian, one-to-one within a control (from_name), maximizing the summed tube IoU; a pair
needs the same label set and a tube IoU above 0. Score (`"region_score": "iou"`): every track of
both annotations counts once, weighted by the mean `label_weights` of its labels; a matched track
scores its tube IoU and an unmatched one 0. `"region_score": "f1"` matches pairs with tube IoU >=
`iou_threshold` and scores F1. Controls combine by `control_weights`; per_label=True gives each
label the mean over the tracks carrying it. No videorectangle on either side scores 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "region_score": "iou",
    "iou_threshold": 0.5,
    "hold_last_keyframe": True,
}

Point = tuple[float, float]
Box = tuple[float, float, float, float, float]  # x, y, width, height, rotation
UNLABELED = "(unlabeled)"


class Options(NamedTuple):
    control_weights: dict[str, float]
    label_weights: dict[str, float]
    f1: bool
    iou_threshold: float
    hold_last_keyframe: bool


class Track(NamedTuple):
    where: str
    control: str
    labels: tuple[str, ...]
    weight: float
    key: str
    boxes: dict[int, Box]
    size: tuple[float, float] | None


# ---------------------------------------------------------------- options and input


class OptionError(ValueError):
    """An invalid value in OPTIONS. Its `option` attribute names the top-level key, so callers can report it."""

    def __init__(self, option: str, value: Any, expected: str, key: str | None = None) -> None:
        where = option if key is None else f"{option}[{key!r}]"
        super().__init__(f"Invalid option {where}={value!r}: expected {expected}.")
        self.option = option


def _check_options(options: dict[str, Any]) -> None:
    """Raise OptionError on the first invalid value in `options`."""
    _check_weights(options, "control_weights")
    _check_weights(options, "label_weights")
    region_score = options.get("region_score")
    if region_score not in ("iou", "f1"):
        raise OptionError("region_score", region_score, "'iou' or 'f1'")
    threshold = options.get("iou_threshold")
    if not _is_number(threshold) or not 0 < threshold <= 1:
        raise OptionError("iou_threshold", threshold, "a number in (0, 1]")
    hold = options.get("hold_last_keyframe")
    if not isinstance(hold, bool):
        raise OptionError("hold_last_keyframe", hold, "true or false")


def _check_weights(options: dict[str, Any], option: str) -> None:
    weights = options.get(option)
    if not isinstance(weights, dict):
        raise OptionError(option, weights, "an object of name -> weight")
    for key, weight in weights.items():
        if not _is_number(weight) or weight < 0:
            raise OptionError(option, weight, "a finite number >= 0", key)


def _is_number(raw: Any) -> TypeGuard[int | float]:
    return not isinstance(raw, bool) and isinstance(raw, int | float) and math.isfinite(raw)


# Runs at import, so a file with invalid OPTIONS fails when it loads instead of on every pair.
_check_options(OPTIONS)


def _weights(raw: Any, name: str) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"option {name} must be an object of name -> weight, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for key, weight in raw.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ValueError(f"option {name}[{key!r}] must be a number >= 0, got {weight!r}")
        out[str(key)] = float(weight)
    return out


def _options(raw: dict[str, Any]) -> Options:
    _check_options(raw)
    return Options(
        control_weights=_weights(raw["control_weights"], "control_weights"),
        label_weights=_weights(raw["label_weights"], "label_weights"),
        f1=raw["region_score"] == "f1",
        iou_threshold=float(raw["iou_threshold"]),
        hold_last_keyframe=raw["hold_last_keyframe"],
    )


def _results(annotation: Any, side: str) -> list[Mapping[str, Any]]:
    if annotation is None:
        return []
    if not isinstance(annotation, Mapping):
        raise ValueError(f"{side} must be an object with a 'result' list, got {type(annotation).__name__}")
    result = annotation.get("result")
    if result is None:
        return []
    if not isinstance(result, list):
        raise ValueError(f"{side}: 'result' must be a list of results, got {type(result).__name__}")
    # Old Label Studio exports nest the result list one level deeper.
    flat = [item for entry in result for item in (entry if isinstance(entry, list) else [entry])]
    for index, item in enumerate(flat):
        if not isinstance(item, Mapping):
            raise ValueError(f"{side}: result #{index} must be an object, got {type(item).__name__}")
    return flat


def _number(value: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    number = value.get(key)
    if number is None and default is not None:
        return default
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"{where}: {key} must be a finite number, got {number!r}")
    return float(number)


def _whole(value: Mapping[str, Any], key: str, where: str) -> int:
    number = _number(value, key, where)
    if number != int(number) or number < 0:
        raise ValueError(f"{where}: {key} must be a whole number >= 0, got {value.get(key)!r}")
    return int(number)


def _frame_size(result: Mapping[str, Any], where: str) -> tuple[float, float] | None:
    width, height = result.get("original_width"), result.get("original_height")
    if width is None and height is None:
        return None
    for name, size in (("original_width", width), ("original_height", height)):
        if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
            raise ValueError(f"{where}: {name} must be a positive number, got {size!r}")
    return float(width), float(height)  # type: ignore[arg-type]


def _labels(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
        raise ValueError(f"{where}: value.labels must be a list of label strings, got {raw!r}")
    return tuple(sorted(set(raw)))


# ---------------------------------------------------------------- keyframes


def _keyframes(value: Mapping[str, Any], where: str) -> list[tuple[int, bool, Box]]:
    sequence = value.get("sequence")
    if not isinstance(sequence, list):
        raise ValueError(f"{where}: value.sequence must be a list of keyframes, got {type(sequence).__name__}")
    by_frame: dict[int, tuple[int, bool, Box]] = {}
    for index, keyframe in enumerate(sequence):
        at = f"{where}: value.sequence[{index}]"
        if not isinstance(keyframe, Mapping):
            raise ValueError(f"{at} must be an object, got {type(keyframe).__name__}")
        enabled = keyframe.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"{at}: enabled must be true or false, got {enabled!r}")
        frame = _whole(keyframe, "frame", at)
        box = (
            _number(keyframe, "x", at),
            _number(keyframe, "y", at),
            _number(keyframe, "width", at),
            _number(keyframe, "height", at),
            _number(keyframe, "rotation", at, default=0.0),
        )
        by_frame[frame] = (frame, enabled, box)  # a repeated frame keeps its last keyframe
    return [by_frame[frame] for frame in sorted(by_frame)]


def _boxes(keyframes: list[tuple[int, bool, Box]], frames_count: int | None, hold: bool) -> dict[int, Box]:
    """Compute the box on every frame where the track is visible."""
    boxes: dict[int, Box] = {}
    for index, (frame, enabled, box) in enumerate(keyframes):
        boxes[frame] = box
        if not enabled:
            continue
        if index + 1 < len(keyframes):
            next_frame, _, next_box = keyframes[index + 1]
            span = next_frame - frame
            for f in range(frame + 1, next_frame):
                t = (f - frame) / span
                boxes[f] = tuple(a + (b - a) * t for a, b in zip(box, next_box, strict=True))  # type: ignore[assignment]
        elif hold and frames_count is not None:
            # NOTE: holding an enabled last keyframe to the end of the video is read from how Label Studio
            # draws tracks on its timeline; no Label Studio source or test confirms it.
            for f in range(frame + 1, frames_count + 1):
                boxes[f] = box
    return boxes


def _track(result: Mapping[str, Any], index: int, side: str, opts: Options) -> Track | None:
    rid = result.get("id")
    control = result.get("from_name")
    where = f"{side}: videorectangle region {rid if rid is not None else '#' + str(index)!r} (from_name {control!r})"
    if not isinstance(control, str) or not control:
        raise ValueError(f"{where}: from_name must be a non-empty string")
    value = result.get("value")
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: value must be an object, got {type(value).__name__}")
    labels = _labels(value.get("labels"), where) or (UNLABELED,)
    weighted_labels = tuple(label for label in labels if opts.label_weights.get(label, 1.0) > 0)
    if not weighted_labels:
        return None
    frames_count = _whole(value, "framesCount", where) if value.get("framesCount") is not None else None
    keyframes = _keyframes(value, where)
    size = _frame_size(result, where)
    weight = math.fsum(opts.label_weights.get(label, 1.0) for label in weighted_labels) / len(weighted_labels)
    boxes = _boxes(keyframes, frames_count, opts.hold_last_keyframe)
    key = repr((keyframes, frames_count, size))
    return Track(where, control, weighted_labels, weight, key, boxes, size)


def _tracks(annotation: Any, side: str, opts: Options) -> list[Track]:
    tracks = []
    for index, result in enumerate(_results(annotation, side)):
        kind = result.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"{side}: result #{index} (id {result.get('id')!r}) has no 'type' string")
        if kind != "videorectangle" or opts.control_weights.get(str(result.get("from_name")), 1.0) == 0:
            continue
        track = _track(result, index, side, opts)
        if track is not None:
            tracks.append(track)
    return tracks


# ---------------------------------------------------------------- geometry


def _area(poly: list[Point]) -> float:
    total = 0.0
    x0, y0 = poly[-1]
    for x1, y1 in poly:
        total += x0 * y1 - x1 * y0
        x0, y0 = x1, y1
    return total / 2.0


def _corners(box: Box, size: tuple[float, float] | None) -> list[Point]:
    """Compute the box's corners in percent, positively oriented, rotated clockwise around its top-left corner."""
    x, y, w, h, rotation = box
    # NOTE: video results often lack original_width/height; rotating in percent is then exact only for square frames.
    sx, sy = (1.0, 1.0) if size is None else (size[0] / 100.0, size[1] / 100.0)
    rad = math.radians(rotation)
    cos, sin = math.cos(rad), math.sin(rad)
    x0, y0 = x * sx, y * sy
    corners = []
    for dx, dy in ((0.0, 0.0), (w * sx, 0.0), (w * sx, h * sy), (0.0, h * sy)):
        corners.append(((x0 + dx * cos - dy * sin) / sx, (y0 + dx * sin + dy * cos) / sy))
    return corners[::-1] if _area(corners) < 0 else corners


def _clip_half_plane(poly: list[Point], a: Point, b: Point) -> list[Point]:
    """Clip `poly` to the half-plane left of the directed line a->b (one Sutherland-Hodgman step)."""
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    out: list[Point] = []
    px, py = poly[-1]
    p_side = dx * (py - ay) - dy * (px - ax)
    for cx, cy in poly:
        c_side = dx * (cy - ay) - dy * (cx - ax)
        if (p_side < 0 <= c_side) or (c_side < 0 < p_side):
            t = p_side / (p_side - c_side)
            out.append((px + t * (cx - px), py + t * (cy - py)))
        if c_side >= 0:
            out.append((cx, cy))
        px, py, p_side = cx, cy, c_side
    return out


def _box_intersection(a: Box, b: Box, size_a: tuple[float, float] | None, size_b: tuple[float, float] | None) -> float:
    if a[4] % 360 == 0 and b[4] % 360 == 0:
        width = min(max(a[0], a[0] + a[2]), max(b[0], b[0] + b[2])) - max(
            min(a[0], a[0] + a[2]), min(b[0], b[0] + b[2])
        )
        height = min(max(a[1], a[1] + a[3]), max(b[1], b[1] + b[3])) - max(
            min(a[1], a[1] + a[3]), min(b[1], b[1] + b[3])
        )
        return max(width, 0.0) * max(height, 0.0)
    poly = _corners(a, size_a)
    clip = _corners(b, size_b)
    previous = clip[-1]
    for current in clip:
        poly = _clip_half_plane(poly, previous, current)
        if len(poly) < 3:
            return 0.0
        previous = current
    return max(_area(poly), 0.0)


def _tube_iou(a: Track, b: Track) -> float:
    intersection = 0.0
    union = 0.0
    for frame in sorted(a.boxes.keys() | b.boxes.keys()):
        box_a, box_b = a.boxes.get(frame), b.boxes.get(frame)
        area_a = abs(box_a[2] * box_a[3]) if box_a else 0.0
        area_b = abs(box_b[2] * box_b[3]) if box_b else 0.0
        if box_a and box_b:
            overlap = area_a if box_a == box_b and a.size == b.size else _box_intersection(box_a, box_b, a.size, b.size)
        else:
            overlap = 0.0
        intersection += overlap
        union += area_a + area_b - overlap
    if union <= 0:
        return 1.0 if a.key == b.key else 0.0
    return min(intersection / union, 1.0)


# ---------------------------------------------------------------- matching and score


def _hungarian(profit: list[list[float]]) -> list[tuple[int, int]]:
    """Rows and columns paired one-to-one maximizing the total profit (potentials method, O(n^2 m))."""
    if not profit or not profit[0]:
        return []
    if len(profit) > len(profit[0]):
        return [(i, j) for j, i in _hungarian([list(column) for column in zip(*profit, strict=True)])]
    n, m = len(profit), len(profit[0])
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)
    for row in range(1, n + 1):
        owner[0], j0 = row, 0
        best = [math.inf] * (m + 1)
        used = [False] * (m + 1)
        while owner[j0] != 0:
            used[j0] = True
            i0, delta, j1 = owner[j0], math.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = -profit[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < best[j]:
                        best[j], way[j] = reduced, j0
                    if best[j] < delta:
                        delta, j1 = best[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    best[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]


def _score_group(a: list[Track], b: list[Track], opts: Options) -> list[tuple[Track, float]]:
    """Score each track of both sides: its matched pair's tube IoU, or 0 when it is unmatched."""
    threshold = opts.iou_threshold if opts.f1 else 0.0
    ious = [[_tube_iou(ta, tb) for tb in b] for ta in a] if a and b else []
    eligible = [[s if s > 0 and s >= threshold else 0.0 for s in row] for row in ious]
    # F1 maximizes the number of pairs, so every eligible pair is worth 1.
    profit = [[float(s > 0) for s in row] for row in eligible] if opts.f1 else eligible
    scores_a, scores_b = [0.0] * len(a), [0.0] * len(b)
    for i, j in _hungarian(profit):
        if eligible[i][j] > 0:
            scores_a[i] = scores_b[j] = 1.0 if opts.f1 else eligible[i][j]
    return list(zip(a, scores_a, strict=True)) + list(zip(b, scores_b, strict=True))


def _grouped(tracks: list[Track]) -> dict[tuple[str, tuple[str, ...]], list[Track]]:
    groups: dict[tuple[str, tuple[str, ...]], list[Track]] = {}
    for track in tracks:
        groups.setdefault((track.control, track.labels), []).append(track)
    return groups


def agreement(annotation_1: Any, annotation_2: Any, per_label: bool = False) -> float | dict[str, float]:
    opts = _options(OPTIONS)
    groups_1 = _grouped(_tracks(annotation_1, "annotation_1", opts))
    groups_2 = _grouped(_tracks(annotation_2, "annotation_2", opts))
    controls: dict[str, list[float]] = {}
    labels: dict[str, list[float]] = {}
    for group in sorted(set(groups_1) | set(groups_2)):
        a = sorted(groups_1.get(group, []), key=lambda t: t.key)
        b = sorted(groups_2.get(group, []), key=lambda t: t.key)
        # Order the two sides the same way whichever annotation comes first, so the result is symmetric.
        if [t.key for t in a] > [t.key for t in b]:
            a, b = b, a
        control_weight = opts.control_weights.get(group[0], 1.0)
        for track, score in _score_group(a, b, opts):
            total = controls.setdefault(track.control, [0.0, 0.0])
            total[0] += track.weight * score
            total[1] += track.weight
            for label in track.labels:
                label_total = labels.setdefault(label, [0.0, 0.0])
                label_total[0] += control_weight * score
                label_total[1] += control_weight
    if per_label:
        return {label: num / den for label, (num, den) in sorted(labels.items())}
    scored = [(opts.control_weights.get(c, 1.0), num / den) for c, (num, den) in sorted(controls.items()) if den > 0]
    if not scored:
        return 1.0
    return sum(w * s for w, s in scored) / sum(w for w, _ in scored)
