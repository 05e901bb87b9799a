"""Throughput of the local backend against calling agreement() in this process.

Scores N pairs of Label Studio choices annotations (identical on about 80% of pairs) twice: through
LocalBackend + the orchestrator (sandboxed worker processes, framed JSON over pipes), and by calling
agreement() directly in a loop. Prints pairs/s for each and the ratio local / in-process.

    .venv/bin/python benchmarks/local_throughput.py [--pairs 100000] [--workers 2] [--builtin]

--builtin runs the built-in exact_match metric (Hungarian matching per control) instead of the small
exact-match metric below, which is so cheap that the run mostly measures the sandbox's overhead.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custom_metrics import orchestrator
from custom_metrics.backends.base import FunctionSpec
from custom_metrics.backends.local import LocalBackend
from custom_metrics.packaging import build_package, code_sha256

SIMPLE_EXACT_MATCH = """
def _choices(annotation):
    selected = {}
    for result in annotation.get("result", []):
        if result.get("type") == "choices":
            selected[result["from_name"]] = sorted(result["value"]["choices"])
    return selected


def agreement(annotation_1, annotation_2, per_label=False):
    return 1.0 if _choices(annotation_1) == _choices(annotation_2) else 0.0
"""

LABELS = ["Positive", "Negative", "Neutral", "Mixed"]


def make_annotation(choice: str, annotation_id: int) -> dict[str, Any]:
    result = {
        "id": f"r{annotation_id}",
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "origin": "manual",
        "value": {"choices": [choice]},
    }
    return {"id": annotation_id, "completed_by": 1 + annotation_id % 7, "result": [result]}


def make_pairs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    generator = random.Random(seed)
    pairs = []
    for index in range(count):
        first = generator.choice(LABELS)
        second = first if generator.random() < 0.8 else generator.choice(LABELS)
        pairs.append(
            {
                "id": f"task{index}:a:b",
                "annotation_1": make_annotation(first, 2 * index),
                "annotation_2": make_annotation(second, 2 * index + 1),
            }
        )
    return pairs


def load_agreement(source: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": "metric"}
    exec(compile(source, "metric.py", "exec"), namespace)
    function: Callable[..., Any] = namespace["agreement"]
    return function


def builtin_source() -> str:
    path = Path(orchestrator.__file__).parent / "builtins" / "exact_match.py"
    return path.read_text("utf-8")


def time_in_process(source: str, pairs: list[dict[str, Any]]) -> tuple[float, float]:
    agreement = load_agreement(source)
    started = time.perf_counter()
    total = 0.0
    for pair in pairs:
        total += float(agreement(pair["annotation_1"], pair["annotation_2"], False))
    return time.perf_counter() - started, total


def time_local(source: str, pairs: list[dict[str, Any]], workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="custom-metrics-bench-") as state_dir:
        backend = LocalBackend(Path(state_dir), workers=workers)
        package = build_package(source)
        name = "custom-metric-benchmark"
        spec = FunctionSpec(name, "benchmark", package, code_sha256(package), source, timeout=300)
        backend.deploy(spec)
        try:
            # Start the workers before the clock runs, as a long-running server has them.
            warm_up = pairs[: workers * 2]
            orchestrator.score_pairs(backend, name, warm_up, per_label=False, request_id="warm-up", project="benchmark")
            started = time.perf_counter()
            results = orchestrator.score_pairs(
                backend, name, pairs, per_label=False, request_id="benchmark", project="benchmark"
            )
            elapsed = time.perf_counter() - started
        finally:
            backend.close()
    errors = [result["error"] for result in results.values() if result["error"] is not None]
    if errors:
        raise SystemExit(f"{len(errors)} pairs failed, first error: {errors[0]}")
    return elapsed, sum(result["score"] for result in results.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000, help="number of annotation pairs to score")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes")
    parser.add_argument("--builtin", action="store_true", help="use the built-in exact_match metric")
    arguments = parser.parse_args()

    source = builtin_source() if arguments.builtin else SIMPLE_EXACT_MATCH
    pairs = make_pairs(arguments.pairs)
    in_process_seconds, in_process_total = time_in_process(source, pairs)
    local_seconds, local_total = time_local(source, pairs, arguments.workers)
    if abs(in_process_total - local_total) > 1e-6 * max(1.0, in_process_total):
        raise SystemExit(f"score sums differ: in-process {in_process_total}, local {local_total}")

    in_process_rate = len(pairs) / in_process_seconds
    local_rate = len(pairs) / local_seconds
    metric = "built-in exact_match" if arguments.builtin else "simple exact match"
    print(f"metric: {metric}, pairs: {len(pairs)}, workers: {arguments.workers}, cpus: {os.cpu_count()}")
    print(f"in-process: {in_process_rate:,.0f} pairs/s ({in_process_seconds:.2f} s)")
    print(f"local:      {local_rate:,.0f} pairs/s ({local_seconds:.2f} s)")
    print(f"ratio local / in-process: {local_rate / in_process_rate:.2f}")


if __name__ == "__main__":
    main()
