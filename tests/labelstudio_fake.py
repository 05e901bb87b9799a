"""A fake Label Studio API on 127.0.0.1 for the sync tests, with only the endpoints the client calls.

It follows Label Studio 1.23.2 where the sync code depends on it:
- `Authorization: Token` is required, else 401.
- `PATCH /api/tasks/{id}` replaces `data` and `meta` wholesale and moves `updated_at`.
- Adding or deleting an annotation moves its task's `updated_at`.
- The JSON export lists every task with its annotations, predictions, `data` and `meta`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-ls-token-0123456789"


class FakeLabelStudio:
    """State of the fake instance; tests add tasks and annotations directly and read what was written."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.lock = threading.RLock()
        self.projects: dict[int, dict[str, Any]] = {1: {"id": 1, "title": "fake project"}}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.annotations: dict[int, dict[str, Any]] = {}
        self.predictions: dict[int, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.views: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        # Called with the task id on each GET /api/tasks/{id}, to simulate edits by someone else.
        self.on_get_task: Callable[[int], None] | None = None
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.url = ""

    # Test helpers -------------------------------------------------------------------------

    def stamp(self) -> str:
        return f"2026-01-01T00:00:00.{next(self._clock):06d}Z"

    def add_task(self, data: dict[str, Any], project: int = 1) -> int:
        with self.lock:
            task_id = next(self._ids)
            self.tasks[task_id] = {
                "id": task_id,
                "project": project,
                "data": data,
                "meta": {},
                "updated_at": self.stamp(),
            }
            return task_id

    def add_annotation(self, task: int, completed_by: int, choice: str, *, was_cancelled: bool = False) -> int:
        with self.lock:
            annotation_id = next(self._ids)
            self.annotations[annotation_id] = {
                "id": annotation_id,
                "task": task,
                "project": self.tasks[task]["project"],
                "completed_by": completed_by,
                "was_cancelled": was_cancelled,
                "updated_at": self.stamp(),
                "result": [
                    {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}
                ],
            }
            self.tasks[task]["updated_at"] = self.stamp()
            return annotation_id

    def delete_annotation(self, annotation: int) -> None:
        with self.lock:
            task = self.annotations.pop(annotation)["task"]
            self.tasks[task]["updated_at"] = self.stamp()

    def edit_data(self, task: int, **fields: Any) -> None:
        """Change task data the way another client's PATCH would."""
        with self.lock:
            self.tasks[task]["data"] = {**self.tasks[task]["data"], **fields}
            self.tasks[task]["updated_at"] = self.stamp()

    def patches(self) -> int:
        return sum(1 for method, path in self.requests if method == "PATCH" and path.startswith("/api/tasks/"))

    # Responses ----------------------------------------------------------------------------

    def task_json(self, task_id: int) -> dict[str, Any]:
        return copy.deepcopy(self.tasks[task_id])

    def export(self, project: int) -> list[dict[str, Any]]:
        return [
            {
                **copy.deepcopy(task),
                "annotations": self.annotations_of(task["id"]),
                "predictions": [copy.deepcopy(p) for p in self.predictions.values() if p["task"] == task["id"]],
            }
            for task in self.tasks.values()
            if task["project"] == project
        ]

    def annotations_of(self, task_id: int) -> list[dict[str, Any]]:
        return [copy.deepcopy(a) for a in self.annotations.values() if a["task"] == task_id]

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path))
            return self._route(method, path.rstrip("/"), query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if match := re.fullmatch(r"/api/projects/(\d+)", path):
            project = self.projects.get(int(match[1]))
            return (200, project) if project else (404, {"detail": "Not found."})
        if match := re.fullmatch(r"/api/projects/(\d+)/export", path):
            return 200, self.export(int(match[1]))
        if match := re.fullmatch(r"/api/tasks/(\d+)", path):
            return self._task(method, int(match[1]), body)
        if match := re.fullmatch(r"/api/tasks/(\d+)/annotations", path):
            task = int(match[1])
            return (200, self.annotations_of(task)) if task in self.tasks else (404, {"detail": "Not found."})
        if path == "/api/predictions":
            task = int(query.get("task", "0"))
            return 200, [copy.deepcopy(p) for p in self.predictions.values() if p["task"] == task]
        if path in ("/api/webhooks", "/api/dm/views"):
            return self._collection(self.webhooks if "webhooks" in path else self.views, method, query, body)
        if match := re.fullmatch(r"/api/(webhooks|dm/views)/(\d+)", path):
            collection = self.webhooks if match[1] == "webhooks" else self.views
            item = collection.get(int(match[2]))
            if item is None:
                return 404, {"detail": "Not found."}
            item.update(body or {})
            return 200, copy.deepcopy(item)
        return 404, {"detail": "Not found."}

    def _task(self, method: str, task_id: int, body: Any) -> tuple[int, Any]:
        if task_id not in self.tasks:
            return 404, {"detail": "Not found."}
        if method == "GET":
            if self.on_get_task is not None:
                self.on_get_task(task_id)
            return 200, self.task_json(task_id)
        if method == "PATCH":
            task = self.tasks[task_id]
            for field in ("data", "meta"):
                if field in body:
                    task[field] = copy.deepcopy(body[field])  # Replaced wholesale, as Label Studio does.
            task["updated_at"] = self.stamp()
            return 200, self.task_json(task_id)
        return 405, {"detail": "Method not allowed."}

    def _collection(
        self, items: dict[int, dict[str, Any]], method: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if method == "POST":
            item_id = next(self._ids)
            items[item_id] = {"id": item_id, **copy.deepcopy(body)}
            return 201, copy.deepcopy(items[item_id])
        project = int(query.get("project", "0"))
        return 200, [copy.deepcopy(item) for item in items.values() if item.get("project") == project]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != f"Token {fake.token}":
            status, body = 401, {"detail": "Authentication credentials were not provided."}
        else:
            parts = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            status, body = fake.handle(self.command, parts.path, query, json.loads(raw) if raw else None)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeLabelStudio) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def running(fake: FakeLabelStudio | None = None) -> Iterator[FakeLabelStudio]:
    """Serve a fake Label Studio on 127.0.0.1 for the duration of the block."""
    fake = fake or FakeLabelStudio()
    server = _Server(fake)
    host, port = server.server_address[:2]
    fake.url = f"http://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
