"""Span overlap for Labels (named entities): character-level IoU of the labelled text.

Every character of the text that a span covers is marked with the span's label. The score is the
intersection over union of the (label, character) marks of the two annotations, so a span with
the right label and a few characters off still earns most of its credit, and a wrong label earns
none. With per_label=True the same IoU is computed for each label separately. Two annotations
without spans agree fully.
"""


def _marks(annotation):
    marks = set()
    for region in annotation.get("result", []):
        value = region.get("value", {})
        if region.get("type") != "labels" or "start" not in value:
            continue
        for label in value.get("labels", []):
            marks.update((label, position) for position in range(int(value["start"]), int(value["end"])))
    return marks


def _iou(first, second):
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def agreement(annotation_1, annotation_2, per_label=False):
    first, second = _marks(annotation_1), _marks(annotation_2)
    if not per_label:
        return _iou(first, second)
    labels = {label for label, _ in first | second}
    return {
        label: _iou({mark for mark in first if mark[0] == label}, {mark for mark in second if mark[0] == label})
        for label in labels
    }
