"""The connection store: secrets on disk, score key rules, the annotation map."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from custom_metrics.errors import InvalidInputError
from custom_metrics.labelstudio.store import Connection, ConnectionNotFoundError, ConnectionStore, validate_score_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_token_file_is_private(tmp_path: Path) -> None:
    store = ConnectionStore(tmp_path)
    store.save_token("p1", "secret-token")
    assert mode(store.folder("p1") / "token") == 0o600
    assert store.token("p1") == "secret-token"


def test_store_webhook_secret_is_private_and_stable(tmp_path: Path) -> None:
    store = ConnectionStore(tmp_path)
    secret = store.webhook_secret("p1", create=True)
    assert secret is not None
    assert len(secret) >= 32
    assert mode(store.folder("p1") / "webhook-secret") == 0o600
    assert store.webhook_secret("p1", create=True) == secret


def test_store_token_falls_back_to_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-env")
    assert ConnectionStore(tmp_path).token("p1") == "from-env"


def test_store_token_missing_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ConnectionNotFoundError, match="LABEL_STUDIO_API_KEY"):
        ConnectionStore(tmp_path).token("p1")


def test_store_load_missing_connection_names_connect(tmp_path: Path) -> None:
    with pytest.raises(ConnectionNotFoundError, match="custom-metrics connect p1"):
        ConnectionStore(tmp_path).load("p1")


def test_store_round_trips_connection(tmp_path: Path) -> None:
    store = ConnectionStore(tmp_path)
    connection = Connection(project="p1", url="http://127.0.0.1:8080", ls_project=3, score_key="iaa", webhook_id=5)
    store.save(connection)
    assert store.load("p1") == connection


def test_store_rejects_path_like_project(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        ConnectionStore(tmp_path).folder("../escape")


@pytest.mark.parametrize("key", ["agreement", "1score", "data.score", "", "a" * 65])
def test_validate_score_key_rejects(key: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_score_key(key)


def test_annotation_map_set_task_replaces_entries(tmp_path: Path) -> None:
    mapping = ConnectionStore(tmp_path).annotation_map("p1")
    mapping.set_task(1, [10, 11])
    mapping.set_task(1, [11, 12])
    assert mapping.tasks_of([10, 11, 12]) == ({1}, [10])


def test_annotation_map_remove_tasks(tmp_path: Path) -> None:
    mapping = ConnectionStore(tmp_path).annotation_map("p1")
    mapping.set_task(1, [10])
    mapping.set_task(2, [20])
    mapping.remove_tasks([1])
    assert mapping.tasks_of([10, 20]) == ({2}, [10])
