"""Helpers copied into several built-ins stay identical.

Each built-in must deploy as one standalone file, so the matching and weighting helpers are copied
into every file that needs them. A fix to one copy must reach all of them; this test fails until it does.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

BUILTINS_DIR = Path(__file__).parent.parent / "functions" / "control_plane" / "custom_metrics" / "builtins"
SHARED_HELPERS = (
    "_weight",
    "_weighted_mean",
    "_max_weight_matching",
    "_control_name",
    "_hungarian",
    "_clip_half_plane",
    "_weights",
    "_check_weights",
    "_is_number",
    "OptionError",
)


def helper_copies() -> dict[str, dict[str, str]]:
    copies: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(BUILTINS_DIR.glob("*.py")):
        if path.name.startswith("__"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in SHARED_HELPERS:
                copies[node.name][path.name] = ast.dump(node)
    return copies


@pytest.mark.parametrize("helper", SHARED_HELPERS)
def test_copied_helper_identical_everywhere(helper: str) -> None:
    copies = helper_copies()[helper]
    assert len(copies) >= 2, f"{helper} is no longer copied; drop it from SHARED_HELPERS"
    reference_file, reference = next(iter(copies.items()))
    differing = [name for name, dump in copies.items() if dump != reference]
    assert differing == [], f"{helper} in {differing} differs from the copy in {reference_file}"
