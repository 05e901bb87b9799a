"""Commands that link a metric project to a live Label Studio project: connect, reconcile, pull.

`fetch_export(settings, project)` is also the source of `agreement --from-label-studio`.
The API token comes from an environment variable or a hidden prompt, and it is stored only in the
connection's 0600 token file, or in an SSM SecureString parameter when the shell exports the stack's
store variables (see `labelstudio.stores`). No command prints the token or the webhook secret.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from custom_metrics.labelstudio.client import LabelStudioClient
from custom_metrics.labelstudio.provision import DEFAULT_VIEW_TITLE, ensure_view, register_webhook
from custom_metrics.labelstudio.store import (
    DEFAULT_SCORE_KEY,
    TOKEN_VARIABLE,
    Connection,
    validate_pair_mode,
    validate_project,
    validate_score_key,
)
from custom_metrics.labelstudio.stores import open_store
from custom_metrics.labelstudio.sync import ProjectSync
from custom_metrics.tasks import PAIR_MODES

if TYPE_CHECKING:
    from custom_metrics.cli import Settings

DEFAULT_RECEIVER_URL = "http://127.0.0.1:8000/webhooks/label-studio"
RECEIVER_PATH = "/webhooks/label-studio"


def fetch_export(settings: Settings, project: str) -> list[dict[str, Any]]:
    """Download the connected Label Studio project's tasks, annotations and predictions as JSON."""
    store = open_store(settings.state_dir)
    connection = store.load(project)
    return store.client(connection).export_tasks(connection.ls_project)


def project_webhook_url(receiver: str, project: str) -> str:
    """Add `project=<project>` to the receiver URL's query."""
    parts = urllib.parse.urlsplit(receiver)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{receiver!r} is not an http(s) URL", param_hint="--webhook-url")
    query = [*urllib.parse.parse_qsl(parts.query), ("project", project)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def default_receiver_url(endpoint: str | None) -> str:
    """Return the stack's receiver URL for an --endpoint, else the local server's."""
    return endpoint.rstrip("/") + RECEIVER_PATH if endpoint else DEFAULT_RECEIVER_URL


def _read_token(variable: str) -> str:
    token = os.environ.get(variable, "").strip()
    if token:
        return token
    prompted: str = click.prompt(f"Label Studio API token (or set {variable})", hide_input=True, err=True)
    return prompted.strip()


@click.command()
@click.argument("project")
@click.option("--label-studio", "url", required=True, help="Base URL of Label Studio, e.g. http://127.0.0.1:8080.")
@click.option("--ls-project", type=click.IntRange(1), required=True, help="Id of the Label Studio project.")
@click.option(
    "--score-key",
    default=DEFAULT_SCORE_KEY,
    show_default=True,
    help="Task data key that receives the score; `agreement` is reserved by Label Studio's exports.",
)
@click.option("--pairs", "pair_mode", type=click.Choice(PAIR_MODES), default="annotations", show_default=True)
@click.option("--prefix", help="Function name prefix of the project's metric.")
@click.option(
    "--webhook-url",
    help=(
        "URL at which Label Studio reaches this service's webhook receiver "
        f"[default: <--endpoint>{RECEIVER_PATH} with --endpoint, else {DEFAULT_RECEIVER_URL}]."
    ),
)
@click.option("--no-webhook", is_flag=True, help="Do not register a webhook; rely on `reconcile` alone.")
@click.option("--view-title", default=DEFAULT_VIEW_TITLE, show_default=True, help="Title of the saved view.")
@click.option("--token-env", default=TOKEN_VARIABLE, show_default=True, help="Environment variable with the token.")
@click.pass_obj
def connect(
    settings: Settings,
    project: str,
    url: str,
    ls_project: int,
    score_key: str,
    pair_mode: str,
    prefix: str | None,
    webhook_url: str | None,
    no_webhook: bool,
    view_title: str,
    token_env: str,
) -> None:
    """Connect PROJECT's metric to a Label Studio project: webhook, saved view and stored token."""
    validate_score_key(score_key)
    validate_pair_mode(pair_mode)
    validate_project(project)
    store = open_store(settings.state_dir)
    token = _read_token(token_env)
    client = LabelStudioClient(url, token)
    title = client.get_project(ls_project).get("title", "")

    store.save_token(project, token)
    target = project_webhook_url(webhook_url or default_receiver_url(settings.endpoint), project)
    webhook_id = None
    if not no_webhook:
        secret = store.webhook_secret(project, create=True)
        assert secret is not None
        webhook_id = register_webhook(client, ls_project, target, secret)
    view_id = ensure_view(client, ls_project, score_key, view_title)
    connection = Connection(
        project=project,
        url=client.url,
        ls_project=ls_project,
        score_key=score_key,
        pair_mode=pair_mode,
        prefix=prefix or settings.prefix,
        webhook_id=webhook_id,
        view_id=view_id,
    )
    store.save(connection)
    click.echo(f"connected {project} to Label Studio project {ls_project} ({title}) at {client.url}")
    if webhook_id is not None:
        click.echo(f"webhook {webhook_id} sends events to {target}")
    click.echo(f"saved view {view_id} {view_title!r} shows data.{score_key}, lowest first")
    click.echo(f"run `custom-metrics reconcile {project}` to score the tasks annotated so far")


@click.command()
@click.argument("project")
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.pass_obj
def reconcile(settings: Settings, project: str, output_format: str) -> None:
    """Rescore every task of the connected project whose score is missing or stale, and write it back."""
    store = open_store(settings.state_dir)
    connection = store.load(project)
    report = ProjectSync(store, connection, settings.service()).reconcile()
    body = report.to_dict()
    if output_format == "json":
        click.echo(json.dumps({"project": project, **body}, indent=2))
    else:
        click.echo(
            f"{project}: {body['tasks']} tasks, {body['rescored']} rescored, {body['written']} written, "
            f"{body['unchanged']} unchanged, {body['skipped']} without pairs, {len(body['failed'])} failed"
        )
    if report.failed:
        raise click.ClickException(
            f"the scores of tasks {report.failed} were not written; the log above names the cause; run reconcile again"
        )


@click.command()
@click.argument("project")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="File to write [default: stdout]."
)
@click.pass_obj
def pull(settings: Settings, project: str, output: Path | None) -> None:
    """Download the connected Label Studio project's JSON export (every task, with annotations)."""
    tasks = fetch_export(settings, project)
    text = json.dumps(tasks, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    click.echo(f"wrote {len(tasks)} tasks to {output}", err=True)


COMMANDS = (connect, reconcile, pull)
