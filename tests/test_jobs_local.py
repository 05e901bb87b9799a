"""Agreement jobs on the local backend, through a real server on 127.0.0.1 with real workers."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custom_metrics.backends.local import LocalBackend
from custom_metrics.jobs import JobOptions, LocalJobs, LocalJobStore
from custom_metrics.server import ControlPlaneServer
from custom_metrics.service import MetricService

EXACT_MATCH = (
    "def agreement(annotation_1, annotation_2, per_label=False):\n"
    "    return 1.0 if annotation_1['result'] == annotation_2['result'] else 0.0\n"
)
FAILS_ON_DISAGREEMENT = (
    "def agreement(annotation_1, annotation_2, per_label=False):\n"
    "    if annotation_1['result'] != annotation_2['result']:\n"
    "        raise ValueError('the annotations disagree')\n"
    "    return 1.0\n"
)
# Fields that differ between two runs of the same export by design.
RUN_FIELDS = ("request_id",)


def generated_tasks(task_count: int, annotators: int, seed: int = 11) -> list[dict[str, Any]]:
    """Tasks of choices annotations; each task gives annotators * (annotators - 1) / 2 pairs."""
    generator = random.Random(seed)
    tasks = []
    annotation_id = 0
    for task_id in range(task_count):
        annotations = []
        for annotator in range(annotators):
            annotation_id += 1
            region = {"from_name": "sentiment", "to_name": "text", "type": "choices"}
            region["value"] = {"choices": [generator.choice("abc")]}
            annotations.append({"id": annotation_id, "completed_by": annotator + 1, "result": [region]})
        tasks.append({"id": task_id, "data": {"text": f"review {task_id}"}, "annotations": annotations})
    return tasks


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def service(state_dir: Path) -> Iterator[MetricService]:
    metric_service = MetricService(LocalBackend(state_dir, workers=2))
    yield metric_service
    metric_service.close()


@pytest.fixture
def client(service: MetricService) -> Iterator[Client]:
    server = ControlPlaneServer(("127.0.0.1", 0), service, max_body_bytes=64 * 1024 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield Client(f"http://{host}:{port}")
    server.shutdown()
    server.server_close()


def without_run_fields(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in RUN_FIELDS}


def wait_for_job(client: Client, job_id: str, deadline_seconds: float = 50.0) -> tuple[dict[str, Any], list[Any]]:
    """Poll the job until it finishes; return its last status and every status seen while it ran."""
    seen: list[Any] = []
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        status_code, body = client.request("GET", f"/agreement-jobs/{job_id}")
        assert status_code == 200, body
        if body["status"] in ("succeeded", "failed"):
            return body, seen
        seen.append((body["status"], dict(body["progress"])))
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {deadline_seconds} s; last progress {seen[-1:]}")


@pytest.mark.timeout(120)
def test_local_job_100k_pairs_reports_progress_and_matches_sync(client: Client) -> None:
    # Slow-ish by design: 100,000 pairs scored twice (about 5 s on 2 cores).
    tasks = generated_tasks(10_000, annotators=5)
    client.request("PUT", "/projects/big/metric", {"code": EXACT_MATCH})

    status_code, created = client.request("POST", "/projects/big/agreement-jobs", {"tasks": tasks})
    final, seen = wait_for_job(client, created["job_id"])
    sync_status, sync_result = client.request("POST", "/projects/big/agreement", {"tasks": tasks})

    assert status_code == 202, created
    assert created["status"] == "queued"
    assert created["progress"]["pairs_total"] == 100_000
    assert final["status"] == "succeeded", final["error"]
    assert final["progress"] == {"pairs_total": 100_000, "pairs_done": 100_000, "pairs_failed": 0}
    partial = [progress["pairs_done"] for state, progress in seen if state == "running"]
    assert any(0 < done < 100_000 for done in partial), seen
    assert partial == sorted(partial)
    assert sync_status == 200
    assert len(final["result"]["pairs"]) == 100_000
    assert without_run_fields(final["result"]) == without_run_fields(sync_result)


def test_local_job_counts_failed_pairs(client: Client) -> None:
    tasks = generated_tasks(30, annotators=3, seed=5)
    client.request("PUT", "/projects/flaky/metric", {"code": FAILS_ON_DISAGREEMENT})

    _, created = client.request("POST", "/projects/flaky/agreement-jobs", {"tasks": tasks, "per_label": True})
    final, _ = wait_for_job(client, created["job_id"])
    _, sync_result = client.request("POST", "/projects/flaky/agreement", {"tasks": tasks, "per_label": True})

    assert final["status"] == "succeeded"
    assert final["progress"]["pairs_failed"] == sync_result["errors"]
    assert sync_result["errors"] > 0
    assert without_run_fields(final["result"]) == without_run_fields(sync_result)


def test_local_job_rejects_missing_metric(client: Client) -> None:
    status_code, body = client.request("POST", "/projects/absent/agreement-jobs", {"tasks": generated_tasks(2, 2)})

    assert status_code == 404
    assert "custom-metric-absent" in body["message"]


def test_local_job_rejects_malformed_export(client: Client) -> None:
    client.request("PUT", "/projects/p/metric", {"code": EXACT_MATCH})

    status_code, body = client.request("POST", "/projects/p/agreement-jobs", {"tasks": [{"annotations": 3}]})

    assert status_code == 400
    assert "annotations" in body["message"]


def test_local_job_requires_inline_tasks(client: Client) -> None:
    client.request("PUT", "/projects/p/metric", {"code": EXACT_MATCH})

    status_code, body = client.request("POST", "/projects/p/agreement-jobs", {"per_label": True})

    assert status_code == 400
    assert "inline" in body["message"]


@pytest.mark.parametrize("job_id", ["0" * 32, "../../functions", "abc"])
def test_local_job_status_unknown_id_is_404(client: Client, job_id: str) -> None:
    status_code, body = client.request("GET", f"/agreement-jobs/{urllib.request.quote(job_id, safe='')}")

    assert status_code == 404
    assert "job" in body["message"]


def test_local_job_status_of_dead_runner_is_failed(service: MetricService, state_dir: Path) -> None:
    service.put_metric("p", code=EXACT_MATCH)
    jobs = LocalJobs(service, LocalJobStore(state_dir))
    created = jobs.prepare("p", generated_tasks(3, 2), JobOptions(), "request-1", keep_tasks=True)
    store = LocalJobStore(state_dir)
    stored = store.read_status(created["job_id"])
    stored.update(status="running", pid=2**22 + 12345)  # above the default pid_max, so no process has it
    store.write_status(stored)

    status = jobs.status(created["job_id"])

    assert status["status"] == "failed"
    assert "ended before the job finished" in status["error"]


def test_local_job_run_from_stored_tasks(service: MetricService, state_dir: Path) -> None:
    service.put_metric("p", code=EXACT_MATCH)
    jobs = LocalJobs(service, LocalJobStore(state_dir))
    tasks = generated_tasks(4, 3)
    created = jobs.prepare("p", tasks, JobOptions(per_control=True), "request-2", keep_tasks=True)

    jobs.run(created["job_id"])
    status = jobs.status(created["job_id"])

    assert status["status"] == "succeeded"
    assert status["result"]["request_id"] == "request-2"
    assert status["result"]["controls"] == service.score("p", tasks, per_control=True)["controls"]
    assert not (state_dir / "jobs" / created["job_id"] / "tasks.json").exists()
    assert status["progress"]["pairs_total"] == 24
