"""Agreement on image regions: rectangles, polygons, ellipses, brush masks and keypoints.

Scores rectanglelabels, polygonlabels, ellipselabels, brushlabels and keypointlabels, and unlabeled
rectangle/polygon/ellipse/brush/keypoint results (labels from a `labels` result with the same id).
Similarity: exact polygon IoU (an ellipse is an `ellipse_vertices`-gon of the ellipse's area); pixel
IoU of Label Studio RLE brush masks (alpha >= `brush_alpha_threshold`); for keypoints 1 - d /
`keypoint_threshold`, d = pixel distance / image diagonal. Rotation (degrees clockwise around a
rectangle's top-left corner or an ellipse's centre) is applied in pixels via original_width/height.
Matching: Hungarian, one-to-one per control (from_name) and image (item_index), maximizing summed
similarity; a pair needs equal label sets, the same kind (area, mask, point) and similarity > 0.
`"region_score": "iou"`: every region of both sides counts once, weighted by the mean
`label_weights` of its labels, scoring its pair's similarity or 0 if unmatched (2 * sum / (n1 + n2)).
`"f1"`: pairs need IoU >= `iou_threshold`; score 2 * pairs / (n1 + n2). Controls combine by
`control_weights`. per_label: each label (across controls) gets the mean over regions carrying it;
unlabeled shapes count as "(unlabeled)". No region of these types on either side scores 1.0 ({}).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeGuard

OPTIONS: dict[str, Any] = {
    "control_weights": {},
    "label_weights": {},
    "region_score": "iou",
    "iou_threshold": 0.5,
    "keypoint_threshold": 0.05,
    "ellipse_vertices": 256,
    "brush_alpha_threshold": 128,
}

Point = tuple[float, float]

UNLABELED = "(unlabeled)"
# Result type -> (shape, the value key that contains its labels, or None for unlabeled shapes).
SHAPE_TYPES: dict[str, tuple[str, str | None]] = {
    "rectanglelabels": ("rectangle", "rectanglelabels"),
    "polygonlabels": ("polygon", "polygonlabels"),
    "ellipselabels": ("ellipse", "ellipselabels"),
    "brushlabels": ("brush", "brushlabels"),
    "keypointlabels": ("keypoint", "keypointlabels"),
    "rectangle": ("rectangle", None),
    "polygon": ("polygon", None),
    "ellipse": ("ellipse", None),
    "brush": ("brush", None),
    "keypoint": ("keypoint", None),
}
FAMILY = {"rectangle": "area", "polygon": "area", "ellipse": "area", "brush": "mask", "keypoint": "point"}


class Options(NamedTuple):
    control_weights: dict[str, float]
    label_weights: dict[str, float]
    iou_threshold: float
    f1: bool
    keypoint_threshold: float
    ellipse_vertices: int
    brush_alpha_threshold: int


class Mask(NamedTuple):
    pixels: int
    runs: tuple[tuple[int, int], ...]
    area: int


class Keypoint(NamedTuple):
    x: float
    y: float
    size: tuple[float, float] | None


class Region(NamedTuple):
    where: str
    control: str
    family: str
    labels: tuple[str, ...]
    item: int
    weight: float
    key: str
    shape: Any
    area: float
    bbox: tuple[float, float, float, float] | None
    convex: bool


# ---------------------------------------------------------------- options


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
    keypoint_threshold = options.get("keypoint_threshold")
    if not _is_number(keypoint_threshold) or not 0 <= keypoint_threshold <= 1:
        raise OptionError("keypoint_threshold", keypoint_threshold, "a fraction of the image diagonal in [0, 1]")
    vertices = options.get("ellipse_vertices")
    if not _is_number(vertices) or vertices != int(vertices) or vertices < 8:
        raise OptionError("ellipse_vertices", vertices, "a whole number >= 8")
    alpha = options.get("brush_alpha_threshold")
    # At 0 every pixel counts, transparent ones too, so any two masks of one image would score 1.
    if not _is_number(alpha) or alpha != int(alpha) or not 1 <= alpha <= 255:
        raise OptionError("brush_alpha_threshold", alpha, "a whole number from 1 to 255")


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
        iou_threshold=float(raw["iou_threshold"]),
        f1=raw["region_score"] == "f1",
        keypoint_threshold=float(raw["keypoint_threshold"]),
        ellipse_vertices=int(raw["ellipse_vertices"]),
        brush_alpha_threshold=int(raw["brush_alpha_threshold"]),
    )


# ---------------------------------------------------------------- input


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


def _number(value: Mapping[str, Any], key: str, where: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"{where}: value.{key} must be a finite number, got {number!r}")
    return float(number)


def _image_size(result: Mapping[str, Any], where: str) -> tuple[float, float] | None:
    width, height = result.get("original_width"), result.get("original_height")
    if width is None and height is None:
        return None
    for name, size in (("original_width", width), ("original_height", height)):
        if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
            raise ValueError(f"{where}: {name} must be a positive number, got {size!r}")
    return float(width), float(height)  # type: ignore[arg-type]


def _labels(raw: Any, where: str, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
        raise ValueError(f"{where}: value.{key} must be a list of label strings, got {raw!r}")
    return tuple(sorted(set(raw)))


def _paired_labels(results: list[Mapping[str, Any]], side: str) -> dict[str, tuple[str, ...]]:
    """Labels of `labels` results, by region id, for unlabeled shapes that share the id."""
    paired: dict[str, tuple[str, ...]] = {}
    for index, result in enumerate(results):
        if result.get("type") == "labels" and isinstance(result.get("id"), str):
            value = result.get("value")
            where = f"{side}: labels region {result['id']!r} (#{index})"
            if isinstance(value, Mapping):
                paired[result["id"]] = _labels(value.get("labels"), where, "labels")
    return paired


# ---------------------------------------------------------------- polygons


def _area(poly: Sequence[Point]) -> float:
    total = 0.0
    x0, y0 = poly[-1]
    for x1, y1 in poly:
        total += x0 * y1 - x1 * y0
        x0, y0 = x1, y1
    return total / 2.0


def _positive(poly: list[Point]) -> list[Point]:
    return poly[::-1] if _area(poly) < 0 else poly


def _bbox(poly: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [x for x, _ in poly]
    ys = [y for _, y in poly]
    return min(xs), min(ys), max(xs), max(ys)


def _bboxes_meet(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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


def _clipped_area(subject: list[Point], convex: Sequence[Point]) -> float:
    """Signed area of `subject` inside the positively oriented convex polygon `convex`.

    Clipping a polygon by a half-plane keeps its winding number inside the half-plane and makes it 0
    outside, so the shoelace area of the result is exact even when `subject` is concave.
    """
    out = subject
    previous = convex[-1]
    for current in convex:
        out = _clip_half_plane(out, previous, current)
        if len(out) < 3:
            return 0.0
        previous = current
    return _area(out)


def _intersection_area(p: list[Point], q: list[Point], q_convex: bool) -> float:
    """Compute the area of p ∩ q for simple, positively oriented polygons.

    A concave q is split into the fan triangles (q0, qi, qi+1). Their signed indicator functions add
    up to the indicator of q, so the signed areas of p inside the triangles add up to the area.
    """
    if q_convex:
        return max(_clipped_area(p, q), 0.0)
    total = 0.0
    p_box = _bbox(p)
    q0 = q[0]
    for i in range(1, len(q) - 1):
        triangle = [q0, q[i], q[i + 1]]
        sign = _area(triangle)
        if sign == 0 or not _bboxes_meet(p_box, _bbox(triangle)):
            continue
        if sign < 0:
            triangle.reverse()
            total -= _clipped_area(p, triangle)
        else:
            total += _clipped_area(p, triangle)
    return max(total, 0.0)


def _rotate(points: list[Point], origin: Point, degrees: float) -> list[Point]:
    """Rotate clockwise on screen (y grows downwards) around `origin`."""
    if degrees % 360 == 0:
        return points
    rad = math.radians(degrees)
    cos, sin = math.cos(rad), math.sin(rad)
    ox, oy = origin
    return [(ox + (x - ox) * cos - (y - oy) * sin, oy + (x - ox) * sin + (y - oy) * cos) for x, y in points]


def _to_percent(points: list[Point], size: tuple[float, float] | None) -> list[Point]:
    if size is None:
        return points
    sx, sy = 100.0 / size[0], 100.0 / size[1]
    return [(x * sx, y * sy) for x, y in points]


def _scale(size: tuple[float, float] | None) -> tuple[float, float]:
    return (1.0, 1.0) if size is None else (size[0] / 100.0, size[1] / 100.0)


def _need_size(size: tuple[float, float] | None, rotation: float, where: str) -> None:
    if size is None and rotation % 360 != 0:
        raise ValueError(
            f"{where}: a rotated shape needs original_width and original_height to rotate in pixels; "
            "add them to the result or set rotation to 0"
        )


def _rectangle(value: Mapping[str, Any], size: tuple[float, float] | None, where: str) -> list[Point]:
    x, y, w, h = (_number(value, key, where) for key in ("x", "y", "width", "height"))
    rotation = _number(value, "rotation", where) if value.get("rotation") is not None else 0.0
    _need_size(size, rotation, where)
    sx, sy = _scale(size)
    x0, y0, x1, y1 = x * sx, y * sy, (x + w) * sx, (y + h) * sy
    corners = _rotate([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], (x0, y0), rotation)
    return _positive(_to_percent(corners, size))


def _polygon(value: Mapping[str, Any], where: str) -> list[Point]:
    points = value.get("points")
    if not isinstance(points, list):
        raise ValueError(f"{where}: value.points must be a list of [x, y] pairs, got {points!r}")
    poly: list[Point] = []
    for index, point in enumerate(points):
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise ValueError(f"{where}: value.points[{index}] must be an [x, y] pair, got {point!r}")
        xy = _number({"x": point[0]}, "x", where), _number({"y": point[1]}, "y", where)
        if not poly or poly[-1] != xy:
            poly.append(xy)
    if len(poly) > 1 and poly[0] == poly[-1]:
        poly.pop()
    if len(poly) < 3:
        raise ValueError(f"{where}: value.points must hold at least 3 distinct points, got {len(poly)}")
    return _positive(poly)


def _ellipse(value: Mapping[str, Any], size: tuple[float, float] | None, where: str, vertices: int) -> list[Point]:
    cx, cy, rx, ry = (_number(value, key, where) for key in ("x", "y", "radiusX", "radiusY"))
    rotation = _number(value, "rotation", where) if value.get("rotation") is not None else 0.0
    _need_size(size, rotation, where)
    sx, sy = _scale(size)
    # Scale the radii so that the polygon's area equals the ellipse's area.
    k = math.sqrt(2 * math.pi / (vertices * math.sin(2 * math.pi / vertices)))
    ax, ay, ox, oy = abs(rx) * sx * k, abs(ry) * sy * k, cx * sx, cy * sy
    step = 2 * math.pi / vertices
    points = [(ox + ax * math.cos(i * step), oy + ay * math.sin(i * step)) for i in range(vertices)]
    return _positive(_to_percent(_rotate(points, (ox, oy), rotation), size))


# ---------------------------------------------------------------- brush masks


class _Bits:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.total, self.where = data, 0, len(data) * 8, where

    def read(self, count: int) -> int:
        end = self.pos + count
        if end > self.total:
            raise ValueError(f"{self.where}: value.rle ends before the mask it declares is complete")
        first, last = self.pos >> 3, (end - 1) >> 3
        chunk = int.from_bytes(self.data[first : last + 1], "big")
        self.pos = end
        return (chunk >> ((last + 1) * 8 - end)) & ((1 << count) - 1)


def _decode_rle(rle: Any, alpha_threshold: int, where: str) -> Mask:
    """Decode Label Studio's bit-packed RLE of RGBA bytes into runs of pixels with alpha >= the threshold.

    Header: 32 bits value count, 5 bits word size - 1, four 4-bit run-length widths - 1. Each chunk:
    1 bit repeat flag, 2 bits choosing a width, that many bits of length - 1, then one word (repeat)
    or one word per value (literal).
    """
    if not isinstance(rle, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in rle):
        raise ValueError(f"{where}: value.rle must be a list of byte values 0-255")
    try:
        bits = _Bits(bytes(rle), where)
    except ValueError as exc:
        raise ValueError(f"{where}: value.rle must be a list of byte values 0-255") from exc
    count, word = bits.read(32), bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    if count % 4:
        raise ValueError(f"{where}: value.rle contains {count} values, which is not 4 (RGBA) per pixel")
    runs: list[list[int]] = []

    def add(start: int, end: int) -> None:
        if start >= end:
            return
        if runs and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end])

    i = 0
    while i < count:
        repeat = bits.read(1)
        j = min(count, i + 1 + bits.read(widths[bits.read(2)]))
        if repeat:
            if bits.read(word) >= alpha_threshold:
                add(i // 4, j // 4)  # pixels whose alpha byte (index 4p+3) lies in [i, j)
            i = j
            continue
        for k in range(i, j):
            if bits.read(word) >= alpha_threshold and k % 4 == 3:
                add(k // 4, k // 4 + 1)
        i = j
    frozen = tuple((start, end) for start, end in runs)
    return Mask(count // 4, frozen, sum(end - start for start, end in frozen))


def _mask_intersection(a: Mask, b: Mask) -> int:
    total, i, j = 0, 0, 0
    while i < len(a.runs) and j < len(b.runs):
        (a0, a1), (b0, b1) = a.runs[i], b.runs[j]
        total += max(0, min(a1, b1) - max(a0, b0))
        if a1 < b1:
            i += 1
        else:
            j += 1
    return total


# ---------------------------------------------------------------- regions


def _region_labels(
    result: Mapping[str, Any], value: Mapping[str, Any], where: str, paired: dict[str, tuple[str, ...]]
) -> tuple[str, ...]:
    label_key = SHAPE_TYPES[str(result.get("type"))][1]
    if label_key is not None:
        labels = _labels(value.get(label_key), where, label_key)
    else:
        rid = result.get("id")
        labels = paired.get(rid, ()) if isinstance(rid, str) else ()
        labels = labels or _labels(value.get("labels"), where, "labels")
    return labels or (UNLABELED,)


def _shape(
    shape_name: str, value: Mapping[str, Any], size: tuple[float, float] | None, where: str, opts: Options
) -> tuple[Any, float, tuple[float, float, float, float] | None, str]:
    """Build the region's geometry and return it with its area, bounding box and canonical sort key."""
    if shape_name in ("rectangle", "polygon", "ellipse"):
        if shape_name == "rectangle":
            poly = _rectangle(value, size, where)
        elif shape_name == "polygon":
            poly = _polygon(value, where)
        else:
            poly = _ellipse(value, size, where, opts.ellipse_vertices)
        return poly, _area(poly), _bbox(poly), repr((shape_name, poly))
    if shape_name == "brush":
        if value.get("format", "rle") != "rle":
            raise ValueError(f"{where}: value.format must be 'rle', got {value.get('format')!r}")
        mask = _decode_rle(value.get("rle"), opts.brush_alpha_threshold, where)
        if size is not None and mask.pixels != round(size[0] * size[1]):
            raise ValueError(
                f"{where}: value.rle contains {mask.pixels} pixels but the image is {size[0]:g}x{size[1]:g}; "
                "check original_width and original_height"
            )
        return mask, float(mask.area), None, repr((mask.pixels, mask.runs))
    point = Keypoint(_number(value, "x", where), _number(value, "y", where), size)
    return point, 0.0, None, repr((point.x, point.y, size))


def _region(
    result: Mapping[str, Any], index: int, side: str, paired: dict[str, tuple[str, ...]], opts: Options
) -> Region | None:
    """Parse one result into a region, or return None when all its labels have weight 0."""
    kind = str(result.get("type"))
    rid = result.get("id")
    control = result.get("from_name")
    where = f"{side}: {kind} region {rid if rid is not None else '#' + str(index)!r} (from_name {control!r})"
    if not isinstance(control, str) or not control:
        raise ValueError(f"{where}: from_name must be a non-empty string")
    value = result.get("value")
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: value must be an object, got {type(value).__name__}")

    labels = _region_labels(result, value, where, paired)
    weighted_labels = tuple(label for label in labels if opts.label_weights.get(label, 1.0) > 0)
    if not weighted_labels:
        return None
    weight = math.fsum(opts.label_weights.get(label, 1.0) for label in weighted_labels) / len(weighted_labels)
    item = result.get("item_index") or 0
    if isinstance(item, bool) or not isinstance(item, int):
        raise ValueError(f"{where}: item_index must be an integer, got {item!r}")

    # NOTE: result.image_rotation (the image turned in the editor) is ignored; shapes compare as stored.
    shape_name = SHAPE_TYPES[kind][0]
    shape, area, bbox, key = _shape(shape_name, value, _image_size(result, where), where, opts)
    convex = shape_name in ("rectangle", "ellipse")
    family = FAMILY[shape_name]
    return Region(where, control, family, weighted_labels, item, weight, key, shape, area, bbox, convex)


def _regions(annotation: Any, side: str, opts: Options) -> list[Region]:
    results = _results(annotation, side)
    paired = _paired_labels(results, side)
    regions = []
    for index, result in enumerate(results):
        kind = result.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"{side}: result #{index} (id {result.get('id')!r}) has no 'type' string")
        if kind not in SHAPE_TYPES or opts.control_weights.get(str(result.get("from_name")), 1.0) == 0:
            continue
        region = _region(result, index, side, paired, opts)
        if region is not None:
            regions.append(region)
    return regions


# ---------------------------------------------------------------- similarity and matching


def _similarity(a: Region, b: Region, opts: Options) -> float:
    if a.key == b.key:
        return 1.0  # the same shape, so no clipping rounding
    if a.family == "area":
        if a.bbox is None or b.bbox is None or not _bboxes_meet(a.bbox, b.bbox):
            return 1.0 if a.area == b.area == 0 and a.key == b.key else 0.0
        if b.convex or not a.convex:
            inter = _intersection_area(a.shape, b.shape, b.convex)
        else:
            inter = _intersection_area(b.shape, a.shape, True)
        union = a.area + b.area - inter
        return min(inter / union, 1.0) if union > 0 else float(a.key == b.key)
    if a.family == "mask":
        if a.shape.pixels != b.shape.pixels:
            raise ValueError(
                f"{a.where} and {b.where}: masks of {a.shape.pixels} and {b.shape.pixels} pixels differ in size"
            )
        inter = _mask_intersection(a.shape, b.shape)
        union = a.shape.area + b.shape.area - inter
        return inter / union if union > 0 else 1.0
    return _keypoint_similarity(a.shape, b.shape, opts.keypoint_threshold)


def _keypoint_similarity(a: Keypoint, b: Keypoint, threshold: float) -> float:
    sizes = [size for size in (a.size, b.size) if size is not None]
    width = sum(size[0] for size in sizes) / len(sizes) if sizes else 1.0
    height = sum(size[1] for size in sizes) / len(sizes) if sizes else 1.0
    dx, dy = (a.x - b.x) / 100.0 * width, (a.y - b.y) / 100.0 * height
    distance = math.hypot(dx, dy) / math.hypot(width, height)
    if threshold == 0:
        return 1.0 if distance == 0 else 0.0
    return max(0.0, 1.0 - distance / threshold)


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


def _score_group(a: list[Region], b: list[Region], opts: Options) -> list[tuple[Region, float]]:
    """Score each region of both sides: its matched pair's similarity, or 0 when it is unmatched."""
    threshold = opts.iou_threshold if opts.f1 and a and a[0].family != "point" else 0.0
    sims = [[_similarity(ra, rb, opts) for rb in b] for ra in a] if a and b else []
    eligible = [[s if s > 0 and s >= threshold else 0.0 for s in row] for row in sims]
    # F1 maximizes the number of pairs, so every eligible pair is worth 1.
    profit = [[float(s > 0) for s in row] for row in eligible] if opts.f1 else eligible
    scores_a, scores_b = [0.0] * len(a), [0.0] * len(b)
    for i, j in _hungarian(profit):
        if eligible[i][j] > 0:
            scores_a[i] = scores_b[j] = 1.0 if opts.f1 else eligible[i][j]
    return list(zip(a, scores_a, strict=True)) + list(zip(b, scores_b, strict=True))


def _grouped(regions: list[Region]) -> dict[tuple[str, str, tuple[str, ...], int], list[Region]]:
    groups: dict[tuple[str, str, tuple[str, ...], int], list[Region]] = {}
    for region in regions:
        groups.setdefault((region.control, region.family, region.labels, region.item), []).append(region)
    return groups


def agreement(annotation_1: Any, annotation_2: Any, per_label: bool = False) -> float | dict[str, float]:
    opts = _options(OPTIONS)
    groups_1 = _grouped(_regions(annotation_1, "annotation_1", opts))
    groups_2 = _grouped(_regions(annotation_2, "annotation_2", opts))
    controls: dict[str, list[float]] = {}
    labels: dict[str, list[float]] = {}
    for group in sorted(set(groups_1) | set(groups_2)):
        a = sorted(groups_1.get(group, []), key=lambda r: r.key)
        b = sorted(groups_2.get(group, []), key=lambda r: r.key)
        # Order the two sides the same way whichever annotation comes first, so the result is symmetric.
        if [r.key for r in a] > [r.key for r in b]:
            a, b = b, a
        control_weight = opts.control_weights.get(group[0], 1.0)
        for region, score in _score_group(a, b, opts):
            total = controls.setdefault(region.control, [0.0, 0.0])
            total[0] += region.weight * score
            total[1] += region.weight
            for label in region.labels:
                label_total = labels.setdefault(label, [0.0, 0.0])
                label_total[0] += control_weight * score
                label_total[1] += control_weight
    if per_label:
        return {label: num / den for label, (num, den) in sorted(labels.items())}
    scored = [(opts.control_weights.get(c, 1.0), num / den) for c, (num, den) in sorted(controls.items()) if den > 0]
    if not scored:
        return 1.0
    return sum(w * s for w, s in scored) / sum(w for w, _ in scored)
