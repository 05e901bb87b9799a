"""IoU for RectangleLabels: boxes matched one-to-one, greedily by IoU, only within the same label.

Coordinates are percentages of the image, which is fine for axis-aligned boxes because IoU does
not change when both axes are scaled. Rotation is ignored here; the built-in `rectanglelabels`
metric handles rotated boxes. The score is the sum of matched IoUs divided by the larger box count,
so unmatched boxes on either side pull it down. With per_label=True the same is computed per label.
"""


def _boxes(annotation):
    boxes = []
    for region in annotation.get("result", []):
        if region.get("type") != "rectanglelabels":
            continue
        value = region["value"]
        for label in value.get("rectanglelabels", []):
            boxes.append((label, value["x"], value["y"], value["x"] + value["width"], value["y"] + value["height"]))
    return boxes


def _iou(a, b):
    width = min(a[3], b[3]) - max(a[1], b[1])
    height = min(a[4], b[4]) - max(a[2], b[2])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - intersection
    return intersection / union if union > 0 else 0.0


def _matched_iou(first, second):
    if not first and not second:
        return 1.0
    candidates = sorted(
        ((_iou(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second) if a[0] == b[0]),
        key=lambda candidate: (-candidate[0], candidate[1], candidate[2]),
    )
    used_first, used_second, total = set(), set(), 0.0
    for iou, i, j in candidates:
        if iou > 0 and i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            total += iou
    return total / max(len(first), len(second))


def agreement(annotation_1, annotation_2, per_label=False):
    first, second = _boxes(annotation_1), _boxes(annotation_2)
    if not per_label:
        return _matched_iou(first, second)
    labels = {box[0] for box in first + second}
    return {
        label: _matched_iou([box for box in first if box[0] == label], [box for box in second if box[0] == label])
        for label in labels
    }
