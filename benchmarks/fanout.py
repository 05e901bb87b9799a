"""Fan-out of the orchestrator over a simulated Lambda: invocations and wall time against their minimums.

The simulated backend replaces LambdaBackend: by default it takes LambdaBackend's batch limit and
its `spread_small_jobs` setting, serializes each request with orjson as LambdaBackend does, rejects a
request or response over Lambda's 6 MiB synchronous payload limit, raises ThrottledError (Lambda's
TooManyRequestsException) beyond its concurrency limit, and sleeps a fixed latency per invocation before
scoring every pair 1.0. The real `orchestrator.score_pairs` drives it. For each job size it prints:

- invocations made against the byte minimum ceil(total serialized pair bytes / 6 MiB) (target <= 1.05);
- wall time of score_pairs against ceil(invocations / concurrency) x latency (target <= 1.2), and the
  caller's CPU time, which bounds the wall time from below.

Pairs are Label Studio span annotations (`labels` results) with 1 to 8 regions per annotation, about
1.6 KB per serialized pair, so a 300,000-pair job is about 475 MB of JSON.

The default latency, 2 s, is an estimate of one invocation that carries about 6 MB of such pairs (the
transfer, json.loads and scoring about 3,900 pairs). The caller serializes every pair twice (once to
measure it, once in the request), all in one Python process, so with a much shorter latency the run
measures the caller's CPU instead of the fan-out.

    .venv/bin/python benchmarks/fanout.py [--pairs 10000 300000] [--latency 2] [--concurrency 16]
        [--max-batch-pairs N] [--spread-small-jobs | --no-spread-small-jobs]
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from custom_metrics import orchestrator
from custom_metrics.backends import aws_lambda
from custom_metrics.backends.base import BatchFailedError, ThrottledError
from custom_metrics.settings import DEFAULT_MAX_CONCURRENCY

FUNCTION_NAME = "custom-metric-benchmark"
LABELS = ["PER", "ORG", "LOC", "MISC", "DATE"]
WORDS = ["Acme", "Berlin", "Ada", "Lovelace", "Monday", "United", "Nations", "river", "report", "merger"]
# Distinct annotations generated; pairs reuse them so that 300,000 pairs fit in little memory.
ANNOTATION_POOL_SIZE = 4000
MAX_REGIONS = 8
DEFAULT_LATENCY_SECONDS = 2.0


def make_annotation(generator: random.Random, annotation_id: int) -> dict[str, Any]:
    results = []
    start = 0
    for region in range(generator.randint(1, MAX_REGIONS)):
        start += generator.randint(1, 40)
        text = " ".join(generator.choice(WORDS) for _ in range(generator.randint(1, 4)))
        results.append(
            {
                "id": f"a{annotation_id}r{region}",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": start, "end": start + len(text), "text": text, "labels": [generator.choice(LABELS)]},
            }
        )
        start += len(text)
    return {"id": annotation_id, "completed_by": 1 + annotation_id % 3, "result": results}


def make_pairs(count: int, seed: int = 11) -> list[dict[str, Any]]:
    generator = random.Random(seed)
    pool = [make_annotation(generator, annotation_id) for annotation_id in range(ANNOTATION_POOL_SIZE)]
    pairs = []
    for index in range(count):
        first, second = generator.sample(pool, 2)
        pairs.append(
            {"id": f"task{index // 3}:{first['id']}:{second['id']}", "annotation_1": first, "annotation_2": second}
        )
    return pairs


class SimulatedLambda:
    """A backend whose invoke waits `latency` seconds and scores every pair 1.0, within Lambda's limits."""

    kind = "simulated-lambda"

    def __init__(self, latency: float, concurrency: int, max_batch_pairs: int, spread_small_jobs: bool) -> None:
        self.latency = latency
        self.max_concurrency = concurrency
        self.max_batch_pairs = max_batch_pairs
        self.max_batch_bytes = aws_lambda.MAX_PAYLOAD_BYTES
        self.spread_small_jobs = spread_small_jobs
        self.invocations = 0
        self.rejected = 0
        self.throttled = 0
        self.request_bytes: list[int] = []
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(payload)
        if len(body) > aws_lambda.MAX_PAYLOAD_BYTES:
            with self._lock:
                self.rejected += 1
            raise BatchFailedError("function_error", f"request of {len(body)} bytes is over Lambda's payload limit")
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.throttled += 1
            raise ThrottledError(f"function {name} is at its concurrency limit of {self.max_concurrency}")
        try:
            with self._lock:
                self.invocations += 1
                self.request_bytes.append(len(body))
            time.sleep(self.latency)
            results = [{"id": pair["id"], "score": 1.0, "per_label": None, "error": None} for pair in payload["pairs"]]
            response = {"results": results, "not_run": []}
        finally:
            self._slots.release()
        if len(orjson.dumps(response)) > aws_lambda.MAX_PAYLOAD_BYTES:
            with self._lock:
                self.rejected += 1
            raise BatchFailedError("function_error", "response is over Lambda's payload limit")
        return response


@dataclass(frozen=True)
class Outcome:
    pairs: int
    pair_bytes: int
    invocations: int
    byte_minimum: int
    wall_seconds: float
    cpu_seconds: float
    ideal_seconds: float
    rejected: int
    throttled: int
    largest_request: int


def run_case(count: int, backend: SimulatedLambda) -> Outcome:
    pairs = make_pairs(count)
    pair_bytes = sum(len(orjson.dumps(pair)) for pair in pairs)
    started = time.perf_counter()
    cpu_started = time.process_time()
    results = orchestrator.score_pairs(
        backend, FUNCTION_NAME, pairs, per_label=False, request_id="benchmark", project="benchmark"
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    failed = [result for result in results.values() if result["error"] is not None]
    if len(results) != count or failed:
        raise SystemExit(f"{count - len(results) + len(failed)} of {count} pairs were not scored")
    return Outcome(
        pairs=count,
        pair_bytes=pair_bytes,
        invocations=backend.invocations,
        byte_minimum=math.ceil(pair_bytes / aws_lambda.MAX_PAYLOAD_BYTES),
        wall_seconds=wall,
        cpu_seconds=cpu,
        ideal_seconds=math.ceil(backend.invocations / backend.max_concurrency) * backend.latency,
        rejected=backend.rejected,
        throttled=backend.throttled,
        largest_request=max(backend.request_bytes),
    )


def report(outcome: Outcome) -> None:
    invocation_ratio = outcome.invocations / outcome.byte_minimum
    wall_ratio = outcome.wall_seconds / outcome.ideal_seconds
    print(f"pairs: {outcome.pairs:,}, serialized: {outcome.pair_bytes / 1e6:,.1f} MB")
    print(
        f"  invocations: {outcome.invocations} against byte minimum {outcome.byte_minimum}: "
        f"{invocation_ratio:.2f}x (target <= 1.05x) {'met' if invocation_ratio <= 1.05 else 'MISSED'}"
    )
    print(
        f"  wall time: {outcome.wall_seconds:.2f} s against {outcome.ideal_seconds:.2f} s: "
        f"{wall_ratio:.2f}x (target <= 1.2x) {'met' if wall_ratio <= 1.2 else 'MISSED'}; "
        f"caller CPU {outcome.cpu_seconds:.2f} s"
    )
    print(
        f"  largest request: {outcome.largest_request:,} bytes, rejected: {outcome.rejected}, "
        f"throttled: {outcome.throttled}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[10_000, 300_000], help="job sizes in pairs")
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY_SECONDS, help="seconds each invocation takes")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY, help="concurrent invocations allowed"
    )
    parser.add_argument(
        "--max-batch-pairs",
        type=int,
        default=aws_lambda.MAX_BATCH_PAIRS,
        help="maximum pairs per invocation (default: LambdaBackend's limit)",
    )
    parser.add_argument(
        "--spread-small-jobs",
        action=argparse.BooleanOptionalAction,
        default=getattr(aws_lambda.LambdaBackend, "spread_small_jobs", True),
        help="split a job into at least --concurrency batches (default: LambdaBackend's setting)",
    )
    arguments = parser.parse_args()
    print(
        f"simulated Lambda: latency {arguments.latency * 1000:.0f} ms, concurrency {arguments.concurrency}, "
        f"payload limit {aws_lambda.MAX_PAYLOAD_BYTES:,} bytes, batch limit {arguments.max_batch_pairs} pairs, "
        f"spread small jobs: {arguments.spread_small_jobs}"
    )
    for count in arguments.pairs:
        backend = SimulatedLambda(
            arguments.latency, arguments.concurrency, arguments.max_batch_pairs, arguments.spread_small_jobs
        )
        report(run_case(count, backend))


if __name__ == "__main__":
    main()
