"""Exact match for Choices: the share of classification controls on which both annotators agree.

Each `choices` result is compared by its `from_name` control; a control present on one side only
counts as a disagreement. With per_label=True every choice that either side selected gets 1 when
both selected it and 0 when only one did.
"""


def _choices(annotation):
    selected = {}
    for region in annotation.get("result", []):
        if region.get("type") == "choices":
            selected[region["from_name"]] = frozenset(region["value"]["choices"])
    return selected


def agreement(annotation_1, annotation_2, per_label=False):
    first, second = _choices(annotation_1), _choices(annotation_2)
    controls = set(first) | set(second)
    if per_label:
        scores = {}
        for control in controls:
            a, b = first.get(control, frozenset()), second.get(control, frozenset())
            for label in a | b:
                scores[label] = 1.0 if label in a and label in b else 0.0
        return scores
    if not controls:
        return 1.0
    matches = sum(1 for control in controls if first.get(control) == second.get(control))
    return matches / len(controls)
