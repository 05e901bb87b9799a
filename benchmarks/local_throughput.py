"""Throughput of the local backend against calling agreement() in this process, for two exact-match metrics.

Scores N pairs of Label Studio choices annotations (identical on about 80% of pairs) with each metric
twice: through LocalBackend and the orchestrator (sandboxed worker processes, framed JSON over pipes),
and by calling agreement() directly in a loop. One run prints, for each metric, pairs/s both ways and
the ratio local / in-process:

- the built-in `choices` metric (exact_match.py with its default options, the file that
  `custom-metrics deploy PROJECT --builtin choices` deploys): the product's exact-match metric;
- a trivial hand-written exact match. It costs so little per pair that the local path is bound by
  encoding, piping and decoding each pair's JSON, so its ratio measures the sandbox's overhead, not
  the metric.

    .venv/bin/python benchmarks/local_throughput.py [--pairs 100000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custom_metrics import builtins, orchestrator
from custom_metrics.backends.base import FunctionSpec
from custom_metrics.backends.local import LocalBackend
from custom_metrics.packaging import build_package, code_sha256

TRIVIAL_EXACT_MATCH = """
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


@dataclass(frozen=True)
class Metric:
    name: str
    function_name: str
    source: str
    note: str


@dataclass(frozen=True)
class Timing:
    in_process_seconds: float
    local_seconds: float


def metrics() -> list[Metric]:
    return [
        Metric(
            "built-in choices (exact_match.py, default options)",
            "custom-metric-benchmark-builtin",
            builtins.source("choices"),
            "the product's exact-match metric",
        ),
        Metric(
            "trivial hand-written exact match",
            "custom-metric-benchmark-trivial",
            TRIVIAL_EXACT_MATCH,
            "bound by encoding and decoding each pair's JSON, not by the metric",
        ),
    ]


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


def time_in_process(source: str, pairs: list[dict[str, Any]]) -> tuple[float, float]:
    agreement = load_agreement(source)
    started = time.perf_counter()
    total = 0.0
    for pair in pairs:
        total += float(agreement(pair["annotation_1"], pair["annotation_2"], False))
    return time.perf_counter() - started, total


def deploy(backend: LocalBackend, metric: Metric) -> None:
    package = build_package(metric.source)
    spec = FunctionSpec(metric.function_name, "benchmark", package, code_sha256(package), metric.source, timeout=300)
    result = backend.deploy(spec)
    # The service runs a trial before it moves `live`; the benchmark's metrics go live directly.
    if result.candidate is not None:
        backend.set_live(metric.function_name, result.candidate)


def time_local(backend: LocalBackend, metric: Metric, pairs: list[dict[str, Any]]) -> tuple[float, float]:
    deploy(backend, metric)
    # Start the workers and load the metric before the clock runs, as a long-running server has them.
    warm_up = pairs[: backend.max_concurrency * 2]
    orchestrator.score_pairs(
        backend, metric.function_name, warm_up, per_label=False, request_id="warm-up", project="benchmark"
    )
    started = time.perf_counter()
    results = orchestrator.score_pairs(
        backend, metric.function_name, pairs, per_label=False, request_id="benchmark", project="benchmark"
    )
    elapsed = time.perf_counter() - started
    errors = [result["error"] for result in results.values() if result["error"] is not None]
    if errors:
        raise SystemExit(f"{metric.name}: {len(errors)} pairs failed, first error: {errors[0]}")
    return elapsed, sum(result["score"] for result in results.values())


def measure(backend: LocalBackend, metric: Metric, pairs: list[dict[str, Any]]) -> Timing:
    in_process_seconds, in_process_total = time_in_process(metric.source, pairs)
    local_seconds, local_total = time_local(backend, metric, pairs)
    if abs(in_process_total - local_total) > 1e-6 * max(1.0, in_process_total):
        raise SystemExit(f"{metric.name}: score sums differ: in-process {in_process_total}, local {local_total}")
    return Timing(in_process_seconds, local_seconds)


def report(metric: Metric, timing: Timing, count: int) -> None:
    in_process_rate = count / timing.in_process_seconds
    local_rate = count / timing.local_seconds
    print(f"{metric.name}: {metric.note}")
    print(f"  in-process: {in_process_rate:>9,.0f} pairs/s ({timing.in_process_seconds:.2f} s)")
    print(f"  local:      {local_rate:>9,.0f} pairs/s ({timing.local_seconds:.2f} s)")
    print(f"  ratio local / in-process: {local_rate / in_process_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000, help="number of annotation pairs to score")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes")
    arguments = parser.parse_args()

    pairs = make_pairs(arguments.pairs)
    print(f"pairs: {len(pairs):,}, workers: {arguments.workers}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="custom-metrics-bench-") as state_dir:
        backend = LocalBackend(Path(state_dir), workers=arguments.workers)
        try:
            for metric in metrics():
                report(metric, measure(backend, metric, pairs), len(pairs))
        finally:
            backend.close()


if __name__ == "__main__":
    main()
