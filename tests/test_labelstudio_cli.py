"""The connect, reconcile and pull commands against the fake Label Studio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from labelstudio_fake import FakeLabelStudio, running

from custom_metrics.cli import Settings, main
from custom_metrics.cli_labelstudio import fetch_export, project_webhook_url
from custom_metrics.labelstudio.store import ConnectionStore

EXAMPLES = Path(__file__).parent.parent / "examples" / "metrics"
RECEIVER = "http://127.0.0.1:8000/webhooks/label-studio"


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with running() as fake:
        yield fake


def cli(state_dir: Path, *arguments: str, token: str | None = None, stdin: str | None = None) -> Result:
    env = {"LABEL_STUDIO_API_KEY": token} if token is not None else {}
    return CliRunner().invoke(main, ["--state-dir", str(state_dir), "--workers", "1", *arguments], env=env, input=stdin)


def connect(state_dir: Path, fake: FakeLabelStudio, *extra: str) -> Result:
    return cli(state_dir, "connect", "p1", "--label-studio", fake.url, "--ls-project", "1", *extra, token=fake.token)


def test_connect_registers_webhook_with_secret(state_dir: Path, fake: FakeLabelStudio) -> None:
    result = connect(state_dir, fake)
    assert result.exit_code == 0, result.output
    (webhook,) = fake.webhooks.values()
    secret = ConnectionStore(state_dir).webhook_secret("p1")
    assert webhook["url"] == f"{RECEIVER}?project=p1"
    assert webhook["headers"] == {"X-Custom-Metrics-Secret": secret}
    assert webhook["send_payload"] is True
    assert webhook["send_for_all_actions"] is True


def test_connect_creates_number_view_lowest_first(state_dir: Path, fake: FakeLabelStudio) -> None:
    connect(state_dir, fake, "--score-key", "iaa")
    (view,) = fake.views.values()
    assert view["project"] == 1
    assert view["data"]["ordering"] == ["tasks:data.iaa"]
    assert view["data"]["columnsDisplayType"] == {"tasks:data.iaa": "Number"}


def test_connect_prints_no_secret(state_dir: Path, fake: FakeLabelStudio) -> None:
    result = connect(state_dir, fake)
    secret = ConnectionStore(state_dir).webhook_secret("p1")
    assert secret is not None
    assert fake.token not in result.output
    assert secret not in result.output


def test_connect_twice_keeps_one_webhook_and_view(state_dir: Path, fake: FakeLabelStudio) -> None:
    connect(state_dir, fake)
    secret = ConnectionStore(state_dir).webhook_secret("p1")
    connect(state_dir, fake)
    assert len(fake.webhooks) == 1
    assert len(fake.views) == 1
    assert ConnectionStore(state_dir).webhook_secret("p1") == secret


def test_connect_prompts_for_token(state_dir: Path, fake: FakeLabelStudio) -> None:
    result = cli(state_dir, "connect", "p1", "--label-studio", fake.url, "--ls-project", "1", stdin=fake.token + "\n")
    assert result.exit_code == 0, result.output
    assert fake.token not in result.output
    assert ConnectionStore(state_dir).token("p1") == fake.token


def test_connect_wrong_token_fails_and_stores_nothing(state_dir: Path, fake: FakeLabelStudio) -> None:
    result = cli(state_dir, "connect", "p1", "--label-studio", fake.url, "--ls-project", "1", token="bad-token")
    assert result.exit_code == 1
    assert "rejected the API token" in result.output
    assert "bad-token" not in result.output
    assert not (state_dir / "label-studio" / "p1" / "token").exists()


def test_connect_reserved_score_key_fails(state_dir: Path, fake: FakeLabelStudio) -> None:
    result = connect(state_dir, fake, "--score-key", "agreement")
    assert result.exit_code == 1
    assert "reserved" in result.output
    assert fake.requests == []


def test_reconcile_command_writes_scores(state_dir: Path, fake: FakeLabelStudio) -> None:
    task = fake.add_task({"text": "a"})
    fake.add_annotation(task, 2, "Positive")
    fake.add_annotation(task, 3, "Positive")
    assert cli(state_dir, "deploy", "p1", str(EXAMPLES / "choices_exact_match.py")).exit_code == 0
    connect(state_dir, fake)
    result = cli(state_dir, "reconcile", "p1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 1
    assert fake.tasks[task]["data"]["agreement_score"] == 1.0


def test_reconcile_unconnected_project_fails(state_dir: Path) -> None:
    result = cli(state_dir, "reconcile", "p1")
    assert result.exit_code == 1
    assert "custom-metrics connect p1" in result.output


def test_pull_writes_export(state_dir: Path, fake: FakeLabelStudio, tmp_path: Path) -> None:
    task = fake.add_task({"text": "a"})
    fake.add_annotation(task, 2, "Positive")
    connect(state_dir, fake)
    output = tmp_path / "export.json"
    result = cli(state_dir, "pull", "p1", "-o", str(output))
    assert result.exit_code == 0, result.output
    tasks = json.loads(output.read_text())
    assert [item["id"] for item in tasks] == [task]
    assert len(tasks[0]["annotations"]) == 1


def test_fetch_export_returns_task_list(state_dir: Path, fake: FakeLabelStudio) -> None:
    fake.add_task({"text": "a"})
    connect(state_dir, fake)
    tasks = fetch_export(Settings(state_dir, None, 1, None), "p1")
    assert [item["data"] for item in tasks] == [{"text": "a"}]


def test_project_webhook_url_keeps_query() -> None:
    url = project_webhook_url("https://metrics.example.com/prod/webhooks/label-studio?stage=1", "p1")
    assert url == "https://metrics.example.com/prod/webhooks/label-studio?stage=1&project=p1"


def test_agreement_from_label_studio_scores_live_tasks(state_dir: Path, fake: FakeLabelStudio) -> None:
    task = fake.add_task({"text": "a"})
    fake.add_annotation(task, 2, "Positive")
    fake.add_annotation(task, 3, "Negative")
    assert cli(state_dir, "deploy", "p1", str(EXAMPLES / "choices_exact_match.py")).exit_code == 0
    connect(state_dir, fake)
    result = cli(state_dir, "agreement", "p1", "--from-label-studio", "--format", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["agreement"] == 0.0
    assert body["tasks"][0]["task"] == task


def test_agreement_needs_tasks_or_label_studio(state_dir: Path) -> None:
    result = cli(state_dir, "agreement", "p1")
    assert result.exit_code == 1
    assert "give either a TASKS.json export or --from-label-studio" in result.output
