"""Read-modify-write of task data against the fake Label Studio, conflicts included."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from labelstudio_fake import FakeLabelStudio, running

from custom_metrics.labelstudio.client import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFoundError,
)
from custom_metrics.labelstudio.writeback import TaskScore, WriteConflictError, WriteOutcome, write_score

KEY = "agreement_score"


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with running() as fake:
        yield fake


@pytest.fixture
def client(fake: FakeLabelStudio) -> LabelStudioClient:
    return LabelStudioClient(fake.url, fake.token)


def score_for(task: int, value: float | None = 0.5, fingerprint: str = "f1") -> TaskScore:
    return TaskScore(
        task=task,
        score=value,
        pairs=1,
        errors=0,
        annotators=["2", "3"],
        function="custom-metric-p1",
        code_sha256="sha",
        pair_mode="annotations",
        fingerprint=fingerprint,
        scored_at="2026-01-01T00:00:00+00:00",
    )


def test_write_score_keeps_other_data_fields(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello", "source": {"file": "a.txt"}})
    assert write_score(client, KEY, score_for(task), sleep=lambda _: None) is WriteOutcome.WRITTEN
    assert fake.tasks[task]["data"] == {"text": "hello", "source": {"file": "a.txt"}, KEY: 0.5}


def test_write_score_records_provenance_in_meta(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello"})
    fake.tasks[task]["meta"] = {"origin": "import"}
    write_score(client, KEY, score_for(task), sleep=lambda _: None)
    meta = fake.tasks[task]["meta"]
    assert meta["origin"] == "import"
    assert meta[KEY]["pairs"] == 1
    assert meta[KEY]["annotators"] == ["2", "3"]
    assert meta[KEY]["code_sha256"] == "sha"
    assert meta[KEY]["scored_at"] == "2026-01-01T00:00:00+00:00"
    assert meta[KEY]["function"] == "custom-metric-p1"


def test_write_score_same_score_is_unchanged(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello"})
    write_score(client, KEY, score_for(task), sleep=lambda _: None)
    assert write_score(client, KEY, score_for(task), sleep=lambda _: None) is WriteOutcome.UNCHANGED
    assert fake.patches() == 1


def test_write_score_null_removes_key(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello"})
    write_score(client, KEY, score_for(task), sleep=lambda _: None)
    write_score(client, KEY, score_for(task, None, "f2"), sleep=lambda _: None)
    assert fake.tasks[task]["data"] == {"text": "hello"}
    assert fake.tasks[task]["meta"][KEY]["score"] is None


def test_write_score_concurrent_edit_is_kept(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello"})
    snapshot = client.get_task(task)
    fake.edit_data(task, reviewer="alice")  # Another client writes after the score was computed.
    delays: list[float] = []
    outcome = write_score(client, KEY, score_for(task), snapshot=snapshot, sleep=delays.append)
    assert outcome is WriteOutcome.WRITTEN
    assert fake.tasks[task]["data"] == {"text": "hello", "reviewer": "alice", KEY: 0.5}
    assert len(delays) == 1


def test_write_score_gives_up_after_attempts(fake: FakeLabelStudio, client: LabelStudioClient) -> None:
    task = fake.add_task({"text": "hello"})
    edits = iter(range(100))
    fake.on_get_task = lambda task_id: fake.edit_data(task_id, counter=next(edits))
    with pytest.raises(WriteConflictError, match=f"task {task} changed"):
        write_score(client, KEY, score_for(task), attempts=3, sleep=lambda _: None)
    assert KEY not in fake.tasks[task]["data"]
    assert fake.patches() == 0


def test_client_wrong_token_is_auth_error(fake: FakeLabelStudio) -> None:
    client = LabelStudioClient(fake.url, "wrong-token")
    with pytest.raises(LabelStudioAuthError) as caught:
        client.get_project(1)
    assert "wrong-token" not in caught.value.message


def test_client_missing_task_is_not_found(client: LabelStudioClient) -> None:
    with pytest.raises(LabelStudioNotFoundError, match="/api/tasks/999"):
        client.get_task(999)


def test_client_unreachable_names_url() -> None:
    client = LabelStudioClient("http://127.0.0.1:9", "token", timeout=2)
    with pytest.raises(LabelStudioError, match=re.escape("cannot reach Label Studio at http://127.0.0.1:9")):
        client.get_project(1)
