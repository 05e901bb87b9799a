"""Tests of the HTML report, built from real agreement results and from hand-made ones with hostile names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.report_html import render_html

CLI = Path(sys.executable).parent / "custom-metrics"
EXAMPLES_DIR = Path(__file__).parent.parent / "examples"

# Attributes through which a browser would fetch a URL (or navigate on load).
FETCHING_ATTRIBUTES = {
    "src",
    "href",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
    "manifest",
    "ping",
    "xlink:href",
}
FETCHING_TAGS = {"link", "img", "iframe", "object", "embed", "audio", "video", "source", "base", "frame", "track"}


class PageScan(HTMLParser):
    """Collect the tags, styles, scripts and heatmap cells of a rendered page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self._cell: dict[str, str] | None = None
        self._raw: list[str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("style"):
            self.styles.append(attributes["style"] or "")
        if tag in ("style", "script"):
            self._raw = []
        if tag == "td" and "data-first" in attributes:
            self._cell = {"class": attributes.get("class") or "", "title": attributes.get("title") or "", "text": ""}
            self.cells[(attributes["data-first"] or "", attributes.get("data-second") or "")] = self._cell

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") and self._raw is not None:
            (self.styles if tag == "style" else self.scripts).append("".join(self._raw))
            self._raw = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw.append(data)
        if self._cell is not None:
            self._cell["text"] += data + " "


def agreement_result(tmp_path: Path, metric: str, tasks: str, *options: str) -> dict[str, Any]:
    environment = {
        **os.environ,
        "CUSTOM_METRICS_STATE_DIR": str(tmp_path / "state"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    command = [str(CLI), "run", str(EXAMPLES_DIR / "metrics" / metric), str(EXAMPLES_DIR / "data" / tasks)]
    completed = subprocess.run(
        [*command, "--format", "json", *options], capture_output=True, text=True, env=environment, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@pytest.fixture(scope="module")
def ner_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("ner")
    return agreement_result(tmp_path, "span_overlap.py", "ner_3annotators.json", "--per-label")


@pytest.fixture(scope="module")
def rectangles_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("rectangles")
    return agreement_result(
        tmp_path, "rectangle_iou.py", "rectangles_3annotators_prediction.json", "--pairs", "all", "--per-label"
    )


def side(by: str, identifier: int, kind: str = "annotation") -> dict[str, Any]:
    return {"kind": kind, "id": identifier, "by": by}


def pair(task: Any, first: dict[str, Any], second: dict[str, Any], score: float | None, **error: Any) -> dict[str, Any]:
    return {
        "task": task,
        "first": first,
        "second": second,
        "score": score,
        "per_label": None,
        "error": error or None,
    }


def make_result(**fields: Any) -> dict[str, Any]:
    """Build a small result: alice and bob agree on task 1, carol's only pair with alice failed on task 2."""
    result: dict[str, Any] = {
        "agreement": 0.75,
        "function": {"name": "custom-metric-demo", "code_sha256": "c2hhMjU2"},
        "pair_mode": "annotations",
        "per_label": True,
        "request_id": "req-1",
        "tasks": [
            {"task": 1, "agreement": 0.75, "pairs": 1, "errors": 0},
            {"task": 2, "agreement": None, "pairs": 1, "errors": 1},
        ],
        "pairs": [
            pair(1, side("alice", 11), side("bob", 12), 0.75),
            pair(2, side("alice", 21), side("carol", 22), None, type="KeyError", message="'value'", line=None),
        ],
        "annotators": [{"first": "alice", "second": "bob", "agreement": 0.75, "pairs": 1}],
        "labels": {"PER": 0.5, "LOC": 1.0},
        "errors": 1,
        "warnings": [],
    }
    result.update(fields)
    return result


def test_render_html_heatmap_every_pair_real_export(ner_result: dict[str, Any]) -> None:
    scan = PageScan(render_html(ner_result))
    names = {cell["first"] for cell in ner_result["annotators"]} | {cell["second"] for cell in ner_result["annotators"]}

    assert len(names) == 3
    assert len(scan.cells) == len(names) ** 2
    for cell in ner_result["annotators"]:
        for key in ((cell["first"], cell["second"]), (cell["second"], cell["first"])):
            assert scan.cells[key]["class"] == "scored"
            assert f"{cell['agreement']:.4f}" in scan.cells[key]["text"]
            assert f"{cell['pairs']} pairs" in scan.cells[key]["text"]


def test_render_html_heatmap_includes_model(rectangles_result: dict[str, Any]) -> None:
    page = render_html(rectangles_result)
    scan = PageScan(page)
    models = {pair["second"]["by"] for pair in rectangles_result["pairs"] if pair["second"]["kind"] == "prediction"}
    people = {pair["first"]["by"] for pair in rectangles_result["pairs"]}

    assert len(models) == 1
    assert len(scan.cells) == (len(models) + len(people)) ** 2
    for cell in rectangles_result["annotators"]:
        assert scan.cells[(cell["first"], cell["second"])]["class"] == "scored"
        assert scan.cells[(cell["second"], cell["first"])]["class"] == "scored"
    model = next(iter(models))
    assert re.search(rf'<span class="name">{re.escape(model)}</span><span class="model">model</span>', page)


def test_render_html_heatmap_marks_missing_cells() -> None:
    scan = PageScan(render_html(make_result()))

    assert scan.cells[("bob", "carol")]["class"] == "missing"
    assert "not compared" in scan.cells[("bob", "carol")]["text"]
    assert scan.cells[("alice", "carol")]["class"] == "missing"
    assert "1 error" in scan.cells[("carol", "alice")]["text"]
    assert scan.cells[("alice", "alice")]["class"] == "self"


def test_render_html_heatmap_cell_colour_follows_value() -> None:
    result = make_result(
        annotators=[
            {"first": "alice", "second": "bob", "agreement": 0.0, "pairs": 1},
            {"first": "alice", "second": "carol", "agreement": 1.0, "pairs": 1},
        ]
    )
    page = render_html(result)

    assert 'data-first="alice" data-second="bob" title="alice and bob: mean 0.0000' in page
    assert "background: #440154; color: #ffffff" in page
    assert "background: #fde725; color: #1d2125" in page


def test_render_html_escapes_user_strings() -> None:
    hostile = '"><img src=x onerror=alert(1)>'
    result = make_result(
        function={"name": "<script>alert('name')</script>", "code_sha256": "x"},
        labels={"<script>alert(1)</script>": 0.5},
        tasks=[{"task": "<b>task</b>", "agreement": 0.75, "pairs": 1, "errors": 0}],
        annotators=[{"first": hostile, "second": "bob", "agreement": 0.75, "pairs": 1}],
        pairs=[
            pair("<b>task</b>", side(hostile, 11), side("bob", 12), 0.75),
            pair(2, side("alice", 21), side("carol", 22), None, type="</td>", message="</table><script>x()</script>"),
        ],
        warnings=["<style>body{display:none}</style>"],
    )
    page = render_html(result)
    scan = PageScan(page)

    assert [tag for tag, _ in scan.tags].count("script") == 1
    assert [tag for tag, _ in scan.tags].count("style") == 1
    assert "img" not in [tag for tag, _ in scan.tags]
    assert not [name for _, attributes in scan.tags for name in attributes if name.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;task&lt;/b&gt;" in page
    assert (hostile, "bob") in scan.cells


def test_render_html_fetches_nothing(rectangles_result: dict[str, Any]) -> None:
    result = dict(rectangles_result)
    result["labels"] = {"https://cdn.example.test/font.woff2": 0.5, "<link href=http://example.test/a.css>": 0.4}
    result["warnings"] = ['<img src="https://example.test/pixel.png">', "url(http://example.test/x)"]
    page = render_html(result)
    scan = PageScan(page)

    assert not [(tag, name) for tag, attributes in scan.tags for name in attributes if name in FETCHING_ATTRIBUTES]
    assert not [tag for tag, _ in scan.tags if tag in FETCHING_TAGS]
    assert not [style for style in scan.styles if "url(" in style or "@import" in style]
    # Every "<" that the data brings in is escaped, so each "<" left in the page opens a real tag.
    assert not re.search(r"<[^>]*\s(?:src|href|srcset|action|data)\s*=", page, re.IGNORECASE)


def test_render_html_real_report_has_no_urls(rectangles_result: dict[str, Any]) -> None:
    page = render_html(rectangles_result)

    assert "http:" not in page
    assert "https:" not in page


def test_render_html_csp_allows_only_own_script() -> None:
    page = render_html(make_result())
    scan = PageScan(page)
    policy = next(attributes["content"] for tag, attributes in scan.tags if attributes.get("http-equiv"))
    digest = base64.b64encode(hashlib.sha256(scan.scripts[0].encode("utf-8")).digest()).decode("ascii")

    assert policy is not None
    assert "default-src 'none'" in policy
    assert f"script-src 'sha256-{digest}'" in policy


def test_render_html_null_project_agreement() -> None:
    result = make_result(
        agreement=None,
        tasks=[{"task": 1, "agreement": None, "pairs": 0, "errors": 0}],
        pairs=[],
        annotators=[],
        labels={},
        errors=0,
    )
    page = render_html(result)

    assert '<span class="value">null</span>' in page
    assert "no task has a scored pair" in page
    assert "The result has no pairs." in page
    assert "No pair failed." in page


def test_render_html_task_rows_sort_keys() -> None:
    page = render_html(make_result())

    assert '<td>1</td><td class="number" data-sort="0.75">' in page
    assert '<td>2</td><td class="number" data-sort="">null</td>' in page


def test_render_html_lists_error_pairs() -> None:
    page = render_html(make_result())
    errors_section = page.split('<section id="errors">')[1]

    assert "Errors (1)" in errors_section
    assert "alice <span" in errors_section
    assert "carol <span" in errors_section
    assert "<td>KeyError</td>" in errors_section
    assert "&#x27;value&#x27;" in errors_section


def test_render_html_label_bars(ner_result: dict[str, Any]) -> None:
    page = render_html(ner_result)
    labels_section = page.split('<section id="labels">')[1].split("</section>")[0]

    for label, score in ner_result["labels"].items():
        assert f"<td>{label}</td>" in labels_section
        assert f'data-sort="{float(score)!r}">{score:.4f}</td>' in labels_section
        assert f"width: {score * 100:.1f}%" in labels_section


def test_render_html_labels_absent_notes() -> None:
    without_flag = render_html(make_result(per_label=False, labels={}))
    plain_numbers = render_html(make_result(per_label=True, labels={}))

    assert "run with --per-label to get them" in without_flag
    assert "The metric returned no per-label breakdown" in plain_numbers


def test_render_html_controls_bars_when_present() -> None:
    page = render_html(make_result(controls={"sentiment": 0.8}))

    assert '<section id="controls">' in page
    assert "<td>sentiment</td>" in page


def test_render_html_warnings_listed() -> None:
    page = render_html(make_result(warnings=["imports numpy, which the Lambda runtime lacks"]))

    assert "<li>imports numpy, which the Lambda runtime lacks</li>" in page


# The tests below open the page in a real browser, so they are skipped where no Chromium is installed.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


def run_chromium(tmp_path: Path, page: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *arguments, page.as_uri()], capture_output=True, text=True, timeout=90, check=False
    )


def task_order(dom: str) -> list[str]:
    tasks_section = dom.split('<section id="tasks">')[1].split("</tbody>")[0]
    return re.findall(r"<tr><td>([^<]*)</td>", tasks_section)


@needs_chromium
def test_render_html_screenshot_not_blank(tmp_path: Path, rectangles_result: dict[str, Any]) -> None:
    image_module = pytest.importorskip("PIL.Image")
    page = tmp_path / "report.html"
    page.write_text(render_html(rectangles_result), encoding="utf-8")
    screenshot = tmp_path / "report.png"

    completed = run_chromium(tmp_path, page, f"--screenshot={screenshot}", "--window-size=1200,1600")

    assert completed.returncode == 0, completed.stderr
    with image_module.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    # A blank page has one colour. This report rendered about 2,000 in Chromium 156 at 1200x1600.
    assert colours is None or len(colours) > 50


@needs_chromium
def test_render_html_script_runs_under_csp(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(make_result()), encoding="utf-8")

    completed = run_chromium(tmp_path, page, "--dump-dom")

    assert completed.returncode == 0, completed.stderr
    assert '<html lang="en" class="js">' in completed.stdout


@pytest.mark.parametrize(("clicks", "expected"), [(1, ["b", "c", "a", "null"]), (2, ["a", "c", "b", "null"])])
@needs_chromium
def test_render_html_sorts_tasks_on_click(tmp_path: Path, clicks: int, expected: list[str]) -> None:
    tasks = [
        {"task": "null", "agreement": None, "pairs": 1, "errors": 1},
        {"task": "a", "agreement": 0.9, "pairs": 1, "errors": 0},
        {"task": "b", "agreement": 0.1, "pairs": 1, "errors": 0},
        {"task": "c", "agreement": 0.5, "pairs": 1, "errors": 0},
    ]
    # The test's own click script is inline, so the page's script-hash policy is removed for this copy only.
    document = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", render_html(make_result(tasks=tasks)))
    click = 'document.querySelectorAll("#tasks th button")[1].click();' * clicks
    page = tmp_path / "report.html"
    page.write_text(document.replace("</body>", f"<script>{click}</script></body>"), encoding="utf-8")

    completed = run_chromium(tmp_path, page, "--dump-dom")

    assert completed.returncode == 0, completed.stderr
    assert task_order(completed.stdout) == expected
