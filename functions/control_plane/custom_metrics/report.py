"""Text renderings of the agreement and statistics results: tables for people, CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from custom_metrics.statistics import NUMERIC_TYPES


def render_table(result: dict[str, Any]) -> str:
    sections = [_headline(result), _tasks(result), _annotators(result)]
    if result.get("controls"):
        sections.append(_controls(result["controls"]))
    if result.get("labels"):
        sections.append(_labels(result["labels"]))
    if result.get("errors") or any(pair.get("per_label_error") for pair in result["pairs"]):
        sections.append(_errors(result))
    if result.get("warnings"):
        sections.append("Warnings\n" + "\n".join(f"  {warning}" for warning in result["warnings"]))
    return "\n\n".join(sections) + "\n"


def _headline(result: dict[str, Any]) -> str:
    function = result["function"]
    scored = sum(1 for task in result["tasks"] if task["agreement"] is not None)
    return (
        f"Project agreement: {_number(result['agreement'])}\n"
        f"  {len(result['tasks'])} tasks ({scored} scored), {len(result['pairs'])} pairs "
        f"({result['pair_mode']}), {result['errors']} errors\n"
        f"  function {function['name']}, code SHA-256 {function['code_sha256']}"
    )


def _tasks(result: dict[str, Any]) -> str:
    rows = [
        [str(task["task"]), _number(task["agreement"]), str(task["pairs"]), str(task["errors"])]
        for task in result["tasks"]
    ]
    return "Tasks\n" + _grid(["task", "agreement", "pairs", "errors"], rows)


def _annotators(result: dict[str, Any]) -> str:
    cells = result["annotators"]
    if not cells:
        return "Annotators\n  no pair was scored"
    names = sorted({cell["first"] for cell in cells} | {cell["second"] for cell in cells})
    index = {name: number for number, name in enumerate(names, start=1)}
    lookup: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        lookup[(cell["first"], cell["second"])] = cell
        lookup[(cell["second"], cell["first"])] = cell
    header = ["", *[f"[{index[name]}]" for name in names]]
    rows = []
    for name in names:
        row = [f"[{index[name]}] {name}"]
        for other in names:
            cell = lookup.get((name, other))
            row.append(f"{cell['agreement']:.4f} ({cell['pairs']})" if cell else "-")
        rows.append(row)
    return "Annotators: mean agreement (pairs)\n" + _grid(header, rows)


def _controls(controls: dict[str, float]) -> str:
    rows = [[control, _number(score)] for control, score in controls.items()]
    return "Controls: mean agreement on each control alone\n" + _grid(["control", "agreement"], rows)


def _labels(labels: dict[str, float]) -> str:
    return "Labels\n" + _grid(["label", "agreement"], [[label, _number(score)] for label, score in labels.items()])


def _errors(result: dict[str, Any]) -> str:
    lines = ["Errors"]
    for pair in result["pairs"]:
        sides = f"{_side(pair['first'])} vs {_side(pair['second'])}"
        error = pair["error"]
        if error is not None:
            lines.append(f"  task {pair['task']}: {sides}: {error['type']}: {error['message']}")
        per_label_error = pair.get("per_label_error")
        if per_label_error:
            lines.append(
                f"  task {pair['task']}: {sides}: per-label breakdown (score kept): "
                f"{per_label_error['type']}: {per_label_error['message']}"
            )
    return "\n".join(lines)


def _side(side: dict[str, Any]) -> str:
    return f"{side['kind']} {side['id']} ({side['by']})"


def _number(value: float | None) -> str:
    return "null" if value is None else f"{value:.4f}"


def _printable(text: str) -> str:
    # Annotator names and labels come from users; a newline or tab in one would break the table.
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def _grid(header: list[str], rows: list[list[str]]) -> str:
    header = [_printable(cell) for cell in header]
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


CSV_COLUMNS = [
    "task",
    "first_kind",
    "first_id",
    "first_by",
    "second_kind",
    "second_id",
    "second_by",
    "score",
    "error_type",
    "error_message",
    "error_line",
    "per_label",
    "per_label_error",
]


def _cell(value: Any) -> Any:
    # Spreadsheets run a cell that starts with one of these as a formula; annotator names and
    # error messages come from users, so such text is quoted with a leading apostrophe.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def render_csv(result: dict[str, Any]) -> str:
    """Render one CSV row per pair, with per-label scores as a JSON object and then the per-label error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for pair in result["pairs"]:
        error = pair["error"] or {}
        row = [
            pair["task"],
            pair["first"]["kind"],
            pair["first"]["id"],
            pair["first"]["by"],
            pair["second"]["kind"],
            pair["second"]["id"],
            pair["second"]["by"],
            "" if pair["score"] is None else pair["score"],
            error.get("type", ""),
            error.get("message", ""),
            error.get("line") or "",
            json.dumps(pair["per_label"], sort_keys=True) if pair["per_label"] is not None else "",
            _error_text(pair.get("per_label_error")),
        ]
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


def _error_text(error: dict[str, Any] | None) -> str:
    # The runtime's message already names the metric.py line when it has one.
    return f"{error['type']}: {error['message']}" if error else ""


def render_statistics_table(report: dict[str, Any]) -> str:
    """Render the statistics of each control, its Cohen's kappa pairs and the warnings, as text."""
    controls = report["controls"]
    sections = [f"Project {report['project']}: statistics for {len(controls)} categorical control(s)"]
    sections.extend(_control_statistics(control) for control in controls)
    if report["warnings"]:
        sections.append("Warnings\n" + "\n".join(f"  {warning}" for warning in report["warnings"]))
    return "\n\n".join(sections) + "\n"


def _control_statistics(control: dict[str, Any]) -> str:
    alpha = control["krippendorff_alpha"]
    rows = [
        ["percent agreement", _number(control["percent_agreement"])],
        ["Fleiss' kappa", _number(control["fleiss_kappa"])],
        ["Krippendorff's alpha, nominal", _number(alpha["nominal"])],
    ]
    if control["type"] in NUMERIC_TYPES:
        rows.append(["Krippendorff's alpha, ordinal", _number(alpha["ordinal"])])
        rows.append(["Krippendorff's alpha, interval", _number(alpha["interval"])])
    lines = [
        f"Control {control['control']} ({control['type']}): {control['items']} items, {len(control['raters'])} raters",
        _grid(["statistic", "value"], rows),
    ]
    pairs = control["cohen_kappa"]
    if pairs:
        pair_rows = [[pair["first"], pair["second"], _number(pair["kappa"]), str(pair["items"])] for pair in pairs]
        lines.append("Cohen's kappa by rater pair\n" + _grid(["first", "second", "kappa", "items"], pair_rows))
    if control["warnings"]:
        lines.append("Warnings\n" + "\n".join(f"  {warning}" for warning in control["warnings"]))
    return "\n".join(lines)
