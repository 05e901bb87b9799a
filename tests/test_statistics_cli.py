"""`custom-metrics stats` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "custom-metrics"


def run_stats(tmp_path: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [str(CLI), "stats", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_stats_table_real_export(tmp_path: Path, corpus_dir: Path) -> None:
    result = run_stats(tmp_path, "leoka", corpus_dir / "labels_taxonomy_3annotators_leoka.json")

    assert result.returncode == 0, result.stderr
    assert "Project leoka: statistics for 1 categorical control(s)" in result.stdout
    assert "Control Category (taxonomy): 8 items, 3 raters" in result.stdout
    assert "Cohen's kappa by rater pair" in result.stdout
    assert "annotator1@example.com" in result.stdout


def test_stats_json_rating_levels(tmp_path: Path) -> None:
    def rating(user: int, stars: int) -> dict[str, object]:
        result = {"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": stars}}
        return {"completed_by": user, "result": [result]}

    tasks = [
        {"id": i, "annotations": [rating(1, a), rating(2, b)]} for i, (a, b) in enumerate([(1, 2), (4, 4), (5, 4)])
    ]
    export = tmp_path / "tasks.json"
    export.write_text(json.dumps(tasks), encoding="utf-8")

    result = run_stats(tmp_path, "p1", export, "--format", "json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["project"] == "p1"
    assert set(report["controls"][0]["krippendorff_alpha"]) == {"nominal", "ordinal", "interval"}
    assert report["controls"][0]["krippendorff_alpha"]["interval"] is not None


def test_stats_not_an_export_fails_in_one_line(tmp_path: Path) -> None:
    export = tmp_path / "tasks.json"
    export.write_text('"just a string"', encoding="utf-8")

    result = run_stats(tmp_path, "p1", export)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "expected a Label Studio JSON export" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
