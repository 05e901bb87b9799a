"""Render an agreement result as one self-contained HTML page that opens offline.

The page has inline CSS and one inline script. Its Content-Security-Policy forbids every network fetch and every
script except that one, which it names by SHA-256 hash. So a label or annotator name that slipped past the escaping
still could not run code or load anything.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from html import escape
from itertools import pairwise
from typing import Any

# Five evenly spaced stops of viridis, a colour map designed to be perceptually uniform and readable with the common
# forms of colour blindness. 0 is dark purple and 1 is yellow.
VIRIDIS_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (0x44, 0x01, 0x54)),
    (0.25, (0x3B, 0x52, 0x8B)),
    (0.5, (0x21, 0x91, 0x8C)),
    (0.75, (0x5E, 0xC9, 0x62)),
    (1.0, (0xFD, 0xE7, 0x25)),
)
# Cells at or above this value get dark text, because below it the viridis colours are too dark for black text.
DARK_TEXT_FROM = 0.55

STYLE = """
:root { --ink: #1d2125; --muted: #5b636b; --line: #d6dadf; --soft: #f3f5f7; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0 auto; max-width: 1160px; padding: 24px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.note { color: var(--muted); margin: 4px 0 10px; }
.score { display: flex; align-items: baseline; gap: 16px; margin: 12px 0; }
.score .value { font-size: 44px; font-weight: 700; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td.number, th.number { text-align: right; }
table.sortable th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0;
  padding: 0; cursor: pointer; }
html.js table.sortable th button::after { content: " \\2195"; color: var(--muted); }
table.sortable th[aria-sort="ascending"] button::after { content: " \\2191"; color: var(--ink); }
table.sortable th[aria-sort="descending"] button::after { content: " \\2193"; color: var(--ink); }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
table.heatmap { border-collapse: separate; border-spacing: 2px; }
table.heatmap th, table.heatmap td { border: 0; }
table.heatmap thead th { vertical-align: bottom; text-align: center; max-width: 7.5em; font-weight: 600; }
table.heatmap thead th .index { display: block; margin: 0; }
table.heatmap thead th .name { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3;
  overflow: hidden; overflow-wrap: anywhere; font-size: 11px; font-weight: 400; line-height: 1.25; }
table.heatmap tbody th { min-width: 14em; max-width: 20em; overflow-wrap: anywhere; }
table.heatmap td { width: 7.5em; height: 3.4em; text-align: center; vertical-align: middle; border-radius: 3px; }
table.heatmap td .value { display: block; font-weight: 700; }
table.heatmap td .count { display: block; font-size: 11px; }
.index { color: var(--muted); font-weight: 400; margin-right: 4px; }
.model { display: inline-block; font-size: 10px; font-weight: 600; text-transform: uppercase; padding: 0 4px;
  margin-left: 4px; border: 1px solid var(--muted); border-radius: 3px; color: var(--muted); }
td.missing, .legend .missing { color: var(--muted);
  background: repeating-linear-gradient(45deg, #fff 0 4px, #e4e7eb 4px 8px); }
td.self, .legend .self { background: var(--soft); color: var(--muted); }
.legend { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; margin: 10px 0; color: var(--muted); }
.legend .ramp { display: inline-block; position: relative; width: 260px; height: 30px; margin: 0 10px; }
.legend .gradient { position: absolute; left: 0; right: 0; top: 0; height: 14px; border-radius: 2px; }
.legend .tick { position: absolute; top: 15px; font-size: 11px; transform: translateX(-50%); }
.legend .box { display: inline-block; width: 22px; height: 14px; vertical-align: middle; margin-right: 6px;
  border: 1px solid var(--line); border-radius: 2px; }
table.bars td.bar { width: 420px; }
.track { background: var(--soft); height: 14px; border-radius: 2px; }
.fill { height: 14px; border-radius: 2px; }
ul.warnings { padding-left: 20px; }
td.message { max-width: 520px; overflow-wrap: anywhere; white-space: pre-wrap; }
"""

LABELS_NOTE = "Mean agreement of each label, from the per-label results."

# Sorts the rows of every `table.sortable` when a header button is clicked. Cells sort by `data-sort` when they
# have it, else by their text. Numbers sort as numbers, and an empty key (a null score) sorts last in both directions.
SCRIPT = """
"use strict";
document.documentElement.classList.add("js");
(function () {
  function sortKey(cell) {
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }
  function compareKeys(a, b) {
    if (a === "" || b === "") { return (a === "") - (b === ""); }
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) { return x - y; }
    return a.localeCompare(b, undefined, { numeric: true });
  }
  function sortBy(table, header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, position) {
      return { row: row, key: sortKey(row.cells[column]), position: position };
    });
    rows.sort(function (left, right) {
      var empty = (left.key === "") - (right.key === "");
      if (empty !== 0) { return empty; }
      var order = compareKeys(left.key, right.key) * (ascending ? 1 : -1);
      return order !== 0 ? order : left.position - right.position;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (item) { fragment.appendChild(item.row); });
    body.appendChild(fragment);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      var button = header.querySelector("button");
      if (button) {
        button.addEventListener("click", function () { sortBy(table, header, column); });
      }
    });
  });
})();
"""


def render_html(result: dict[str, Any]) -> str:
    """Render the agreement result JSON (as `--format json` prints it) as one HTML document."""
    title = f"Agreement report: {result['function']['name']}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        _summary(result),
        _warnings(result.get("warnings") or []),
        _heatmap(result),
        _bars("Labels", "label", LABELS_NOTE, result.get("labels") or {}, _no_labels_note(result)),
    ]
    controls = result.get("controls")
    if isinstance(controls, dict) and controls:
        sections.append(_bars("Controls", "control", "Mean agreement on each control alone.", controls, ""))
    sections.extend([_task_table(result["tasks"]), _errors(result["pairs"], result.get("errors", 0))])
    body = "\n".join(section for section in sections if section)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_content_security_policy()}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    # Inline style attributes carry the computed colours and bar widths, so styles need 'unsafe-inline'.
    return (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'"
    )


def _summary(result: dict[str, Any]) -> str:
    tasks = result["tasks"]
    scored = sum(1 for task in tasks if task["agreement"] is not None)
    agreement = result["agreement"]
    explanation = (
        "mean of the task agreements"
        if agreement is not None
        else "no task has a scored pair, so there is no project agreement"
    )
    function = result["function"]
    facts = [
        ("Tasks", f"{len(tasks)} ({scored} scored)"),
        ("Pairs", f"{len(result['pairs'])} ({result['pair_mode']})"),
        ("Pair errors", str(result.get("errors", 0))),
        ("Per-label results", "yes" if result.get("per_label") else "no"),
        ("Function", function["name"]),
        ("Code SHA-256", function["code_sha256"]),
        ("Request id", str(result.get("request_id", ""))),
    ]
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts)
    return (
        '<section id="summary"><div class="score"><span class="value">'
        f"{_number(agreement)}</span><span>project agreement: {explanation}</span></div>"
        f'<dl class="facts">{rows}</dl></section>'
    )


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(str(warning))}</li>" for warning in warnings)
    return f'<section id="warnings"><h2>Warnings</h2><ul class="warnings">{items}</ul></section>'


def _participants(result: dict[str, Any]) -> list[tuple[str, bool]]:
    """List every annotator and model in the result, people first, each as (name, is_model)."""
    names: set[str] = set()
    models: set[str] = set()
    for pair in result["pairs"]:
        for side in (pair["first"], pair["second"]):
            names.add(str(side["by"]))
            if side["kind"] == "prediction":
                models.add(str(side["by"]))
    for cell in result["annotators"]:
        names.update((str(cell["first"]), str(cell["second"])))
    return [(name, name in models) for name in sorted(names, key=lambda name: (name in models, name))]


def _pair_errors(result: dict[str, Any]) -> Counter[frozenset[str]]:
    errors: Counter[frozenset[str]] = Counter()
    for pair in result["pairs"]:
        if pair["error"] is not None:
            errors[frozenset((str(pair["first"]["by"]), str(pair["second"]["by"])))] += 1
    return errors


def _heatmap(result: dict[str, Any]) -> str:
    participants = _participants(result)
    heading = '<section id="annotators"><h2>Annotators</h2>'
    if not participants:
        return heading + '<p class="note">The result has no pairs.</p></section>'
    cells = {frozenset((str(cell["first"]), str(cell["second"]))): cell for cell in result["annotators"]}
    errors = _pair_errors(result)
    header = "".join(
        f'<th scope="col" title="{escape(name)}"><span class="index">{number}</span>'
        f'<span class="name">{escape(name)}</span>{_model_tag(is_model)}</th>'
        for number, (name, is_model) in enumerate(participants, start=1)
    )
    rows = []
    for number, (name, is_model) in enumerate(participants, start=1):
        row_cells = "".join(
            _heatmap_cell(name, other, cells.get(frozenset((name, other))), errors[frozenset((name, other))])
            for other, _ in participants
        )
        rows.append(
            f'<tr><th scope="row" title="{escape(name)}"><span class="index">{number}</span>'
            f'<span class="name">{escape(name)}</span>{_model_tag(is_model)}</th>{row_cells}</tr>'
        )
    return (
        heading + '<p class="note">Mean agreement over the pairs that two annotators or models share. '
        "The smaller line gives the number of scored pairs.</p>"
        f'{_legend()}<div class="scroll"><table class="heatmap"><thead><tr><th></th>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _heatmap_cell(first: str, second: str, cell: dict[str, Any] | None, errors: int) -> str:
    names = f'data-first="{escape(first)}" data-second="{escape(second)}"'
    error_note = f", {errors} error{'' if errors == 1 else 's'}" if errors else ""
    if cell is not None:
        value = float(cell["agreement"])
        pairs = int(cell["pairs"])
        label = f"{first} and {second}: mean {value:.4f} over {pairs} scored pairs{error_note}"
        return (
            f'<td class="scored" {names} title="{escape(label)}" style="{_cell_style(value)}">'
            f'<span class="value">{value:.4f}</span><span class="count">{pairs} pairs{error_note}</span></td>'
        )
    if first == second:
        return f'<td class="self" {names} title="{escape(first)} with itself: not compared"></td>'
    reason = f"{errors} error{'' if errors == 1 else 's'}" if errors else "not compared"
    label = f"{first} and {second}: no scored pair ({reason})"
    return f'<td class="missing" {names} title="{escape(label)}"><span class="count">{reason}</span></td>'


def _legend() -> str:
    ticks = "".join(f'<span class="tick" style="left: {stop * 100:g}%">{stop:g}</span>' for stop, _ in VIRIDIS_STOPS)
    return (
        '<div class="legend"><span>agreement</span><span class="ramp">'
        f'<span class="gradient" style="background: {_gradient()}"></span>{ticks}</span>'
        '<span><span class="box missing"></span>no scored pair</span>'
        '<span><span class="box self"></span>same annotator or model, not compared</span>'
        '<span><span class="model">model</span> prediction</span></div>'
    )


def _no_labels_note(result: dict[str, Any]) -> str:
    if not result.get("per_label"):
        return "No per-label results: run with --per-label to get them."
    return "The metric returned no per-label breakdown (a plain number for each pair)."


def _bars(title: str, column: str, note: str, scores: dict[str, Any], empty_note: str) -> str:
    section_id = title.lower()
    heading = f'<section id="{section_id}"><h2>{escape(title)}</h2>'
    if not scores:
        return f'{heading}<p class="note">{escape(empty_note)}</p></section>'
    rows = []
    for name, score in scores.items():
        fill = ""
        if score is not None:
            width = _clamp(float(score)) * 100
            fill = f'<div class="fill" style="width: {width:.1f}%; background: {_colour(float(score))}"></div>'
        rows.append(
            f"<tr><td>{escape(str(name))}</td>"
            f'<td class="bar"><div class="track">{fill}</div></td>'
            f'<td class="number" data-sort="{_sort_number(score)}">{_number(score)}</td></tr>'
        )
    return (
        f'{heading}<p class="note">{escape(note)}</p><table class="bars sortable"><thead><tr>'
        f'<th><button type="button">{escape(column)}</button></th><th></th>'
        '<th class="number"><button type="button">agreement</button></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _task_table(tasks: list[dict[str, Any]]) -> str:
    rows = []
    for task in tasks:
        agreement = task["agreement"]
        swatch = (
            f'<span class="swatch" style="background: {_colour(float(agreement))}"></span>'
            if agreement is not None
            else ""
        )
        rows.append(
            f"<tr><td>{escape(str(task['task']))}</td>"
            f'<td class="number" data-sort="{_sort_number(agreement)}">{swatch}{_number(agreement)}</td>'
            f'<td class="number">{int(task["pairs"])}</td><td class="number">{int(task["errors"])}</td></tr>'
        )
    header = "".join(
        f'<th class="{css}"><button type="button">{name}</button></th>'
        for name, css in (("task", ""), ("agreement", "number"), ("pairs", "number"), ("errors", "number"))
    )
    return (
        '<section id="tasks"><h2>Tasks</h2><p class="note">Click a column header to sort. Null agreements '
        "(tasks without a scored pair) stay last.</p>"
        f'<div class="scroll"><table class="sortable"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _errors(pairs: list[dict[str, Any]], count: int) -> str:
    heading = f'<section id="errors"><h2>Errors ({int(count)})</h2>'
    failed = [pair for pair in pairs if pair["error"] is not None]
    if not failed:
        return heading + '<p class="note">No pair failed.</p></section>'
    rows = []
    for pair in failed:
        error = pair["error"]
        line = error.get("line")
        rows.append(
            f"<tr><td>{escape(str(pair['task']))}</td><td>{_side(pair['first'])}</td><td>{_side(pair['second'])}</td>"
            f"<td>{escape(str(error.get('type', '')))}</td>"
            f'<td class="message">{escape(str(error.get("message", "")))}</td>'
            f'<td class="number">{"" if line is None else int(line)}</td></tr>'
        )
    header = "".join(
        f'<th><button type="button">{name}</button></th>'
        for name in ("task", "first", "second", "error", "message", "line")
    )
    return (
        f'{heading}<p class="note">These pairs are left out of every mean.</p>'
        f'<div class="scroll"><table class="sortable"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _side(side: dict[str, Any]) -> str:
    return f'{escape(str(side["by"]))} <span class="index">{escape(str(side["kind"]))} {escape(str(side["id"]))}</span>'


def _model_tag(is_model: bool) -> str:
    return '<span class="model">model</span>' if is_model else ""


def _number(value: Any) -> str:
    return "null" if value is None else f"{float(value):.4f}"


def _sort_number(value: Any) -> str:
    return "" if value is None else repr(float(value))


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _colour(value: float) -> str:
    """Interpolate the viridis stops linearly at `value`, clamped to [0, 1], as a CSS hex colour."""
    value = _clamp(value)
    for (low, low_rgb), (high, high_rgb) in pairwise(VIRIDIS_STOPS):
        if value <= high:
            weight = (value - low) / (high - low)
            channels = (round(a + (b - a) * weight) for a, b in zip(low_rgb, high_rgb, strict=True))
            return "#" + "".join(f"{channel:02x}" for channel in channels)
    return "#" + "".join(f"{channel:02x}" for channel in VIRIDIS_STOPS[-1][1])


def _cell_style(value: float) -> str:
    text = "#1d2125" if _clamp(value) >= DARK_TEXT_FROM else "#ffffff"
    return f"background: {_colour(value)}; color: {text}"


def _gradient() -> str:
    stops = ", ".join(f"{_colour(stop)} {stop * 100:g}%" for stop, _ in VIRIDIS_STOPS)
    return f"linear-gradient(to right, {stops})"
