"""Rescoring, deletions and reconcile against the fake Label Studio with a real local metric."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labelstudio_fake import FakeLabelStudio, running

from custom_metrics.backends.local import LocalBackend
from custom_metrics.labelstudio.events import EventPlan
from custom_metrics.labelstudio.store import Connection, ConnectionStore
from custom_metrics.labelstudio.sync import ProjectSync
from custom_metrics.service import MetricService

KEY = "agreement_score"
EXAMPLES = Path(__file__).parent.parent / "examples" / "metrics"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricService]:
    service = MetricService(LocalBackend(tmp_path_factory.mktemp("backend"), workers=1))
    service.put_metric("p1", code=(EXAMPLES / "choices_exact_match.py").read_text())
    yield service
    service.close()


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with running() as fake:
        yield fake


@pytest.fixture
def sync(fake: FakeLabelStudio, service: MetricService, tmp_path: Path) -> ProjectSync:
    store = ConnectionStore(tmp_path)
    connection = Connection(project="p1", url=fake.url, ls_project=1)
    store.save(connection)
    store.save_token("p1", fake.token)
    return ProjectSync(store, connection, service)


def annotated_task(fake: FakeLabelStudio, *choices: str) -> int:
    task = fake.add_task({"text": "some text", "batch": 3})
    for annotator, choice in enumerate(choices, start=2):
        fake.add_annotation(task, annotator, choice)
    return task


def test_rescore_writes_mean_pair_score(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive", "Negative")
    report = sync.handle(EventPlan(action="ANNOTATION_CREATED", ls_project=1, rescore_tasks={task}))
    assert report.written == 1
    assert fake.tasks[task]["data"][KEY] == pytest.approx(1 / 3)
    assert fake.tasks[task]["data"]["batch"] == 3
    assert fake.tasks[task]["meta"][KEY]["annotators"] == ["2", "3", "4"]
    assert fake.tasks[task]["meta"][KEY]["pairs"] == 3


def test_rescore_single_annotation_writes_nothing(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive")
    report = sync.rescore_tasks([task])
    assert report.skipped == 1
    assert fake.patches() == 0


def test_rescore_other_ls_project_is_ignored(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    sync.handle(EventPlan(action="ANNOTATION_CREATED", ls_project=99, rescore_tasks={task}))
    assert fake.patches() == 0


def test_deleted_annotation_rescores_its_task(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    odd = fake.add_annotation(task, 4, "Negative")
    sync.rescore_tasks([task])
    assert fake.tasks[task]["data"][KEY] == pytest.approx(1 / 3)
    fake.delete_annotation(odd)
    report = sync.handle(EventPlan(action="ANNOTATIONS_DELETED", ls_project=1, deleted_annotations=[odd]))
    assert report.written == 1
    assert fake.tasks[task]["data"][KEY] == 1.0


def test_deleted_annotation_down_to_one_clears_score(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive")
    second = fake.add_annotation(task, 3, "Negative")
    sync.rescore_tasks([task])
    fake.delete_annotation(second)
    sync.handle(EventPlan(action="ANNOTATIONS_DELETED", ls_project=1, deleted_annotations=[second]))
    assert KEY not in fake.tasks[task]["data"]
    assert fake.tasks[task]["meta"][KEY]["pairs"] == 0


def test_unknown_deleted_annotation_reconciles(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Negative")
    report = sync.handle(EventPlan(action="ANNOTATIONS_DELETED", ls_project=1, deleted_annotations=[12345]))
    assert report.tasks == 1
    assert fake.tasks[task]["data"][KEY] == 0.0


def test_reconcile_repairs_lost_event(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    sync.rescore_tasks([task])
    fake.add_annotation(task, 4, "Negative")  # No webhook reaches the service for this one.
    report = sync.reconcile()
    assert report.written == 1
    assert fake.tasks[task]["data"][KEY] == pytest.approx(1 / 3)


def test_reconcile_skips_current_tasks(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    annotated_task(fake, "Positive", "Positive")
    annotated_task(fake, "Positive")
    fake.add_task({"text": "not annotated"})
    sync.reconcile()
    patches = fake.patches()
    report = sync.reconcile()
    assert patches == 1
    assert fake.patches() == patches
    assert report.unchanged == 3
    assert report.rescored == 0


def test_reconcile_restores_overwritten_score(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    sync.reconcile()
    fake.edit_data(task, **{KEY: 0.0})
    sync.reconcile()
    assert fake.tasks[task]["data"][KEY] == 1.0


def test_reconcile_records_sync_state(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    annotated_task(fake, "Positive", "Positive")
    sync.reconcile()
    state = sync.store.sync_state("p1")
    assert state["export_tasks"] == 1
    assert state["written"] == 1
    assert "last_reconciled_at" in state


def test_reconcile_fills_annotation_map(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    sync.reconcile()
    annotation_ids = [item["id"] for item in fake.annotations_of(task)]
    tasks, unknown = sync.annotations.tasks_of(annotation_ids)
    assert tasks == {task}
    assert unknown == []


def test_deleted_task_leaves_annotation_map(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    task = annotated_task(fake, "Positive", "Positive")
    sync.rescore_tasks([task])
    annotation_ids = [item["id"] for item in fake.annotations_of(task)]
    sync.handle(EventPlan(action="TASKS_DELETED", ls_project=1, deleted_tasks=[task]))
    assert sync.annotations.tasks_of(annotation_ids)[1] == annotation_ids


def test_rescore_deleted_task_is_not_a_failure(fake: FakeLabelStudio, sync: ProjectSync) -> None:
    report = sync.rescore_tasks([4242])
    assert report.removed == 1
    assert report.failed == []
