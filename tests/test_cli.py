"""The `custom-metrics` command as a user runs it: a real subprocess over a temporary state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "custom-metrics"
CONSTANT = "def agreement(annotation_1, annotation_2, per_label=False):\n    return 1.0\n"


def run_cli(state_dir: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [str(CLI), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


@pytest.fixture
def metric(tmp_path: Path) -> Path:
    path = tmp_path / "metric.py"
    path.write_text(CONSTANT)
    return path


@pytest.fixture
def ner_export(corpus_dir: Path) -> Path:
    return corpus_dir / "labels_taxonomy_3annotators_leoka.json"


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_deploy_then_unchanged_with_same_sha(state_dir: Path, metric: Path) -> None:
    first = run_cli(state_dir, "deploy", "p1", metric, "--tag", "team", "qa")
    second = run_cli(state_dir, "deploy", "p1", metric, "--tag", "team", "qa")
    assert first.returncode == 0
    assert "created custom-metric-p1" in first.stdout
    assert "unchanged" in second.stdout
    assert first.stdout.split("SHA-256 ")[1] == second.stdout.split("SHA-256 ")[1]


def test_agreement_table_shows_project_and_matrix(state_dir: Path, examples_dir: Path, ner_export: Path) -> None:
    run_cli(state_dir, "deploy", "ner", examples_dir / "metrics" / "span_overlap.py")
    result = run_cli(state_dir, "agreement", "ner", ner_export)
    assert result.returncode == 0, result.stderr
    assert "Project agreement: 0." in result.stdout
    assert "Annotators: mean agreement" in result.stdout
    assert "annotator1@example.com" in result.stdout


def test_agreement_json_has_documented_keys(state_dir: Path, metric: Path, ner_export: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    result = run_cli(state_dir, "agreement", "p1", ner_export, "--format", "json")
    body = json.loads(result.stdout)
    for key in ("agreement", "function", "tasks", "pairs", "annotators", "labels", "errors"):
        assert key in body
    assert body["pairs"][0]["first"]["kind"] == "annotation"


def test_agreement_csv_has_row_per_pair(state_dir: Path, metric: Path, ner_export: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    result = run_cli(state_dir, "agreement", "p1", ner_export, "--format", "csv")
    assert len(result.stdout.strip().splitlines()) == 1 + 24


def test_run_scores_without_deploying(state_dir: Path, metric: Path, ner_export: Path) -> None:
    result = run_cli(state_dir, "run", metric, ner_export, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["agreement"] == 1.0
    assert not (state_dir / "functions").exists()


def test_check_with_tasks_prints_each_pair(state_dir: Path, metric: Path, ner_export: Path) -> None:
    result = run_cli(state_dir, "check", metric, ner_export)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("score 1.0000") == 24


def test_check_bad_metric_fails_with_line(state_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def agreement(a, b, per_label=False)\n    return 1\n")
    result = run_cli(state_dir, "check", path)
    assert result.returncode != 0
    assert "syntax error at line 1" in result.stdout


def test_get_list_delete(state_dir: Path, metric: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric, "--tag", "team", "qa")
    assert "custom-metric-p1" in run_cli(state_dir, "list").stdout
    shown = run_cli(state_dir, "get", "p1").stdout
    assert "team = qa" in shown
    assert "return 1.0" in shown
    assert run_cli(state_dir, "delete", "p1").returncode == 0
    assert_one_line_error(run_cli(state_dir, "get", "p1"), "no metric function named 'custom-metric-p1'")


def test_missing_tasks_file_is_one_line_error(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    assert_one_line_error(run_cli(state_dir, "agreement", "p1", tmp_path / "absent.json"), "cannot read")


def test_tasks_not_json_is_one_line_error(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    path = tmp_path / "tasks.json"
    path.write_text("{oops")
    assert_one_line_error(run_cli(state_dir, "agreement", "p1", path), "is not valid JSON")


def test_tasks_not_a_list_is_one_line_error(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    path = tmp_path / "tasks.json"
    path.write_text('"hello"')
    assert_one_line_error(run_cli(state_dir, "agreement", "p1", path), "expected a Label Studio JSON export")


def test_metric_not_deployed_is_one_line_error(state_dir: Path, ner_export: Path) -> None:
    assert_one_line_error(run_cli(state_dir, "agreement", "nope", ner_export), "no metric function named")


def test_bad_metric_deploy_is_error_and_keeps_previous(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    first = run_cli(state_dir, "deploy", "p1", metric)
    broken = tmp_path / "broken.py"
    broken.write_text("def agreement(a, b):\n    return 1\n")
    assert_one_line_error(run_cli(state_dir, "deploy", "p1", broken), "does not accept per_label")
    assert first.stdout.split("SHA-256 ")[1].strip(")\n") in run_cli(state_dir, "get", "p1").stdout


def test_bad_tags_listed_and_nothing_stored(state_dir: Path, metric: Path) -> None:
    result = run_cli(state_dir, "deploy", "p1", metric, "--tag", "aws:x", "1", "--tag", "ok", "a|b")
    assert result.returncode != 0
    assert "aws:" in result.stderr
    assert "a|b" in result.stderr
    assert not (state_dir / "functions" / "custom-metric-p1" / "function.json").exists()


def test_metric_file_not_utf8_is_one_line_error(state_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.py"
    path.write_bytes(b"# caf\xe9\ndef agreement(a, b, per_label=False):\n    return 1\n")
    assert_one_line_error(run_cli(state_dir, "deploy", "p1", path), "is not UTF-8 text")


def test_agreement_html_written_to_output_file(state_dir: Path, metric: Path, ner_export: Path, tmp_path: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    report = tmp_path / "report.html"
    result = run_cli(state_dir, "agreement", "p1", ner_export, "--format", "html", "--output", report)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_csv_quotes_formula_like_annotator(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    tasks = [
        {
            "id": 1,
            "annotations": [
                {"id": 1, "completed_by": {"email": "=HYPERLINK(1)"}, "result": []},
                {"id": 2, "completed_by": 2, "result": []},
            ],
        }
    ]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    result = run_cli(state_dir, "run", metric, path, "--format", "csv")
    assert "'=HYPERLINK(1)" in result.stdout


def test_agreement_shows_progress_on_terminal(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    import pty

    annotations = [{"id": number, "completed_by": number, "result": []} for number in range(3)]
    tasks = [{"id": task, "annotations": annotations} for task in range(200)]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    run_cli(state_dir, "deploy", "p1", metric)
    controller, terminal = pty.openpty()
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(state_dir)}
    process = subprocess.Popen(
        [str(CLI), "agreement", "p1", str(path), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=environment,
    )
    os.close(terminal)
    output = process.communicate(timeout=120)[0]
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.returncode == 0
    assert b"scoring pairs: 600/600 (100%)" in shown
    assert json.loads(output)["agreement"] == 1.0


def test_agreement_hides_progress_when_piped(state_dir: Path, metric: Path, ner_export: Path) -> None:
    run_cli(state_dir, "deploy", "p1", metric)
    result = run_cli(state_dir, "agreement", "p1", ner_export)
    assert "scoring pairs" not in result.stderr


def test_state_dir_file_is_error(metric: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "state-file"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli(blocker, "deploy", "p1", metric), "check --state-dir")


def test_table_escapes_newline_in_annotator(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    people = [{"email": "evil\nname@example.com"}, {"email": "b@example.com"}]
    tasks = [{"id": 1, "annotations": [{"id": n, "completed_by": who, "result": []} for n, who in enumerate(people)]}]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    result = run_cli(state_dir, "run", metric, path)
    assert "evil\\nname@example.com" in result.stdout
    assert not any(line.startswith("name@example.com") for line in result.stdout.splitlines())


def test_tasks_with_bom_accepted(state_dir: Path, metric: Path, ner_export: Path, tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + ner_export.read_bytes())
    result = run_cli(state_dir, "run", metric, path, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["agreement"] == 1.0


def test_tasks_not_utf8_is_one_line_error(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"id": 1, "data": {"text": "café"}}]'.encode("latin-1"))
    assert_one_line_error(run_cli(state_dir, "run", metric, path), "is not UTF-8 text")


def test_tasks_wrapped_in_object_is_one_line_error(state_dir: Path, metric: Path, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text('{"tasks": []}')
    assert_one_line_error(run_cli(state_dir, "run", metric, path), "pass that list itself")


def test_output_equal_to_input_refused(state_dir: Path, metric: Path, ner_export: Path, tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(ner_export.read_bytes())
    assert_one_line_error(run_cli(state_dir, "run", metric, path, "--output", path), "is also an input file")
    assert path.read_bytes() == ner_export.read_bytes()
