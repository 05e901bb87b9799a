"""Invalid built-in options are rejected at render time, so deploy (CLI and API) and `init` store nothing.

Each built-in checks its own OPTIONS when it is imported. `render()` runs that check and turns its
error into InvalidInputError, and a file whose OPTIONS were edited by hand fails the same way when it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builtin_loading import load_builtin

from custom_metrics import builtins
from custom_metrics.backends.local import LocalBackend
from custom_metrics.errors import InvalidInputError
from custom_metrics.server import ControlPlaneServer
from custom_metrics.service import MetricService

CLI = Path(sys.executable).parent / "custom-metrics"

# (built-in, options, option named in the error, text the message must contain)
INVALID = [
    ("labels", {"iou_threshold": 2}, "iou_threshold", "(0, 1]"),
    ("labels", {"iou_threshold": 0}, "iou_threshold", "(0, 1]"),
    ("labels", {"span_score": "nope"}, "span_score", "'overlap' or 'f1'"),
    ("labels", {"label_weights": {"A": -1}}, "label_weights", "label_weights['A']=-1"),
    ("labels", {"control_weights": {"ner": True}}, "control_weights", ">= 0"),
    ("choices", {"selection_match": "EXACT"}, "selection_match", "'jaccard' or 'exact'"),
    ("choices", {"label_weights": {"A": -0.5}}, "label_weights", ">= 0"),
    ("rating", {"rating_max": 0}, "rating_max", "> 1"),
    ("rating", {"rating_max": 1}, "rating_max", "> 1"),
    ("rating", {"rating_max": None}, "rating_max", "> 1"),
    ("number", {"number_tolerance": -1}, "number_tolerance", ">= 0"),
    ("number", {"number_tolerance": {"score": -1}}, "number_tolerance", "number_tolerance['score']=-1"),
    ("number", {"number_range": 0}, "number_range", "> 0"),
    ("number", {"number_range": {"score": 0}}, "number_range", "number_range['score']=0"),
    ("number", {"number_range": "wide"}, "number_range", "> 0"),
    ("relation", {"endpoint_iou_threshold": 0}, "endpoint_iou_threshold", "(0, 1]"),
    ("relation", {"endpoint_iou_threshold": 1.5}, "endpoint_iou_threshold", "(0, 1]"),
    ("relation", {"keypoint_radius": -1}, "keypoint_radius", ">= 0"),
    ("textarea", {"label_weights": {"answer": -2}}, "label_weights", ">= 0"),
    ("rectanglelabels", {"region_score": "dice"}, "region_score", "'iou' or 'f1'"),
    ("rectanglelabels", {"iou_threshold": 0}, "iou_threshold", "(0, 1]"),
    ("keypointlabels", {"keypoint_threshold": -0.1}, "keypoint_threshold", "[0, 1]"),
    ("keypointlabels", {"keypoint_threshold": 2}, "keypoint_threshold", "[0, 1]"),
    ("ellipselabels", {"ellipse_vertices": 7}, "ellipse_vertices", ">= 8"),
    ("ellipselabels", {"ellipse_vertices": 8.5}, "ellipse_vertices", "whole number"),
    ("brushlabels", {"brush_alpha_threshold": 0}, "brush_alpha_threshold", "1 to 255"),
    ("brushlabels", {"brush_alpha_threshold": 256}, "brush_alpha_threshold", "1 to 255"),
    ("videorectangle", {"region_score": "exact"}, "region_score", "'iou' or 'f1'"),
    ("videorectangle", {"iou_threshold": 1.01}, "iou_threshold", "(0, 1]"),
]

VALID = [
    ("labels", {"iou_threshold": 1, "span_score": "f1"}),
    ("labels", {"label_weights": {"A": 0, "B": 2.5}}),
    ("number", {"number_tolerance": 0}),
    ("number", {"number_range": {"score": 0.5, "other": None}}),
    ("rating", {"rating_max": 10}),
    ("relation", {"keypoint_radius": 0, "endpoint_iou_threshold": 1}),
    ("keypointlabels", {"keypoint_threshold": 0}),
    ("ellipselabels", {"ellipse_vertices": 8}),
    ("brushlabels", {"brush_alpha_threshold": 255}),
    ("videorectangle", {"hold_last_keyframe": False, "region_score": "f1"}),
]


def hand_edited(name: str, old: str, new: str) -> str:
    """Return the default source of built-in `name` with one line of its OPTIONS literal replaced."""
    text = builtins.source(name)
    assert text.count(old) == 1, f"{old!r} not found once in built-in {name!r}"
    return text.replace(old, new)


def execute(text: str) -> types.ModuleType:
    module = types.ModuleType("hand_edited_metric")
    exec(compile(text, "metric.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(("name", "options", "option", "fragment"), INVALID)
def test_render_invalid_option_raises(name: str, options: dict[str, Any], option: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render(name, options)
    assert caught.value.details["option"] == option
    assert caught.value.details["builtin"] == name
    assert f"Built-in {name!r}" in caught.value.message
    assert option in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize(("name", "options"), VALID)
def test_render_valid_edge_options_load(name: str, options: dict[str, Any]) -> None:
    module = load_builtin(name, options)
    for key, value in options.items():
        assert module.OPTIONS[key] == value


@pytest.mark.parametrize("name", builtins.names())
def test_render_defaults_pass_check(name: str) -> None:
    assert builtins.render(name) == builtins.source(name)


def test_render_nan_names_option() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render("labels", {"iou_threshold": float("nan")})
    assert caught.value.details["option"] == "iou_threshold"
    assert "'iou_threshold'" in caught.value.message
    assert "nan is not a finite number" in caught.value.message


def test_render_nested_infinity_names_option() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render("choices", {"label_weights": {"A": float("inf")}})
    assert caught.value.details["option"] == "label_weights"
    assert "inf is not a finite number" in caught.value.message


def test_render_non_string_key_names_option() -> None:
    with pytest.raises(InvalidInputError) as caught:
        builtins.render("labels", {"label_weights": {1: 2}})
    assert caught.value.details["option"] == "label_weights"
    assert "key 1 is not a string" in caught.value.message


def test_render_broken_builtin_error_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    # A ValueError without an `option` attribute means the built-in file is broken: a platform error, not a 400.
    broken = builtins.source("labels") + '\nraise ValueError("broken built-in")\n'
    monkeypatch.setattr(builtins, "source", lambda name: broken)
    with pytest.raises(ValueError, match="broken built-in") as caught:
        builtins.render("labels")
    assert not isinstance(caught.value, InvalidInputError)


def test_hand_edited_options_fail_at_import() -> None:
    text = hand_edited("labels", '"iou_threshold": 0.5,', '"iou_threshold": 2,')
    with pytest.raises(ValueError, match=r"Invalid option iou_threshold=2: expected a number in \(0, 1\]") as caught:
        execute(text)
    assert getattr(caught.value, "option", None) == "iou_threshold"


def test_hand_edited_per_control_value_fails_at_import() -> None:
    text = hand_edited("number", '"number_tolerance": None,', '"number_tolerance": {"score": float("nan")},')
    with pytest.raises(ValueError, match=r"number_tolerance\['score'\]=nan"):
        execute(text)


def test_hand_edited_missing_option_fails_at_import() -> None:
    text = hand_edited("choices", '    "selection_match": "jaccard",\n', "")
    with pytest.raises(ValueError, match="selection_match=None"):
        execute(text)


def test_hand_edited_message_matches_render() -> None:
    text = hand_edited("rectanglelabels", '"ellipse_vertices": 256,', '"ellipse_vertices": 4,')
    with pytest.raises(ValueError) as from_file:
        execute(text)
    with pytest.raises(InvalidInputError) as from_render:
        builtins.render("rectanglelabels", {"ellipse_vertices": 4})
    assert str(from_file.value) in from_render.value.message


# ---------------------------------------------------------------- API


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def client(state_dir: Path) -> Iterator[Client]:
    service = MetricService(LocalBackend(state_dir, workers=1))
    server = ControlPlaneServer(("127.0.0.1", 0), service, max_body_bytes=1024 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield Client(f"http://{host}:{port}")
    server.shutdown()
    server.server_close()
    service.close()


def span_task() -> dict[str, Any]:
    def annotation(annotation_id: int, user: int, end: int) -> dict[str, Any]:
        region = {
            "id": "r1",
            "from_name": "ner",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": end, "labels": ["PER"]},
        }
        return {"id": annotation_id, "completed_by": user, "result": [region]}

    return {"id": 1, "annotations": [annotation(1, 1, 10), annotation(2, 2, 5)]}


def test_api_invalid_option_is_400_and_keeps_previous(client: Client) -> None:
    status, created = client.request("PUT", "/projects/p1/metric", {"builtin": "labels"})
    assert status == 201, created
    status, body = client.request("PUT", "/projects/p1/metric", {"builtin": "labels", "options": {"iou_threshold": 5}})
    assert status == 400
    assert body["option"] == "iou_threshold"
    assert body["builtin"] == "labels"
    assert "iou_threshold=5" in body["message"]
    _, current = client.request("GET", "/projects/p1/metric")
    assert current["function"]["code_sha256"] == created["function"]["code_sha256"]
    status, scored = client.request("POST", "/projects/p1/agreement", {"tasks": [span_task()]})
    assert status == 200
    assert scored["errors"] == 0
    assert scored["agreement"] == pytest.approx(0.5)


def test_api_invalid_option_first_deploy_stores_nothing(client: Client) -> None:
    options = {"selection_match": "EXACT"}
    status, body = client.request("PUT", "/projects/p2/metric", {"builtin": "choices", "options": options})
    assert status == 400
    assert body["option"] == "selection_match"
    assert client.request("GET", "/projects/p2/metric")[0] == 404


def test_api_hand_edited_options_fail_trial(client: Client) -> None:
    code = hand_edited("labels", '"iou_threshold": 0.5,', '"iou_threshold": 2,')
    status, body = client.request("PUT", "/projects/p3/metric", {"code": code})
    assert status == 422
    assert "Invalid option iou_threshold=2" in body["message"]
    assert body["live_version"] is None


# ---------------------------------------------------------------- CLI


def run_cli(state_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CUSTOM_METRICS_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [str(CLI), *arguments], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (("--builtin", "labels", "--option", "iou_threshold=2"), "iou_threshold=2"),
        (("--builtin", "labels", "--option", 'span_score="nope"'), "span_score='nope'"),
        (("--builtin", "labels", "--option", 'label_weights={"A":-1}'), "label_weights['A']=-1"),
        (("--builtin", "choices", "--option", 'selection_match="EXACT"'), "selection_match='EXACT'"),
        (("--builtin", "rating", "--option", "rating_max=0"), "rating_max=0"),
        (("--builtin", "number", "--option", "number_tolerance=-1"), "number_tolerance=-1"),
        (("--builtin", "number", "--option", "number_range=0"), "number_range=0"),
        (("--builtin", "labels", "--option", "iou_threshold=NaN"), "'iou_threshold'"),
    ],
)
def test_cli_deploy_invalid_option_one_line_error(state_dir: Path, arguments: tuple[str, ...], fragment: str) -> None:
    result = run_cli(state_dir, "deploy", "p1", *arguments)
    assert_one_line_error(result, fragment)


def test_cli_deploy_invalid_option_keeps_previous(state_dir: Path) -> None:
    first = run_cli(state_dir, "deploy", "p1", "--builtin", "labels")
    assert first.returncode == 0, first.stderr
    rejected = run_cli(state_dir, "deploy", "p1", "--builtin", "labels", "--option", "iou_threshold=2")
    assert_one_line_error(rejected, "iou_threshold=2")
    again = run_cli(state_dir, "deploy", "p1", "--builtin", "labels")
    assert "unchanged" in again.stdout


def test_cli_init_invalid_option_prints_nothing(state_dir: Path) -> None:
    result = run_cli(state_dir, "init", "--builtin", "rating", "--option", "rating_max=0")
    assert_one_line_error(result, "rating_max=0")
    assert result.stdout == ""


def test_cli_repeated_option_is_error(state_dir: Path) -> None:
    arguments = ("--builtin", "labels", "--option", "iou_threshold=0.7", "--option", "iou_threshold=0.9")
    result = run_cli(state_dir, "init", *arguments)
    assert_one_line_error(result, "--option iou_threshold is given more than once")
    assert result.stdout == ""
