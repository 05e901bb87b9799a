"""Commands for agreement jobs: `job ID [--wait]`, and the hidden `run-job` that a local `agreement --async` starts.

Without `--endpoint`, `agreement --async` stores the job in the state directory and starts a detached
`custom-metrics run-job ID` process, so the job goes on after the command returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from custom_metrics.jobs import FINISHED_STATUSES, STATUS_FAILED, JobOptions, LocalJobs, LocalJobStore
from custom_metrics.jobs_remote import RemoteJobs, fetch_result

if TYPE_CHECKING:
    from custom_metrics.cli import Settings

POLL_INTERVAL_SECONDS = 0.5
_RUNNER_CODE = "from custom_metrics.cli import main; main()"


def start_job(settings: Settings, project: str, data: Any, **options: Any) -> None:
    """Start an agreement job and print its id on stdout."""
    job_options = JobOptions(**options)
    if settings.endpoint:
        status = RemoteJobs(settings.service()).create(project, data, job_options)
    else:
        jobs = LocalJobs(settings.service(), LocalJobStore(settings.state_dir))
        status = jobs.prepare(project, data, job_options, request_id=_new_request_id(), keep_tasks=True)
        _spawn_runner(settings, status["job_id"], jobs.store.job_dir(status["job_id"]))
    click.echo(status["job_id"])
    click.echo(
        f"started job {status['job_id']}; follow it with `custom-metrics job {status['job_id']} --wait`", err=True
    )


def _new_request_id() -> str:
    return uuid.uuid4().hex


def _spawn_runner(settings: Settings, job_id: str, job_dir: Path) -> None:
    command = [sys.executable, "-c", _RUNNER_CODE, "--state-dir", str(settings.state_dir)]
    if settings.workers:
        command += ["--workers", str(settings.workers)]
    if settings.prefix:
        command += ["--prefix", settings.prefix]
    command += ["run-job", job_id]
    with open(job_dir / "runner.log", "ab") as log:
        # A new session keeps the runner alive when the terminal that ran `agreement --async` closes.
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def _status(settings: Settings, job_id: str) -> dict[str, Any]:
    if settings.endpoint:
        return RemoteJobs(settings.service()).status(job_id)
    return LocalJobs(settings.service(), LocalJobStore(settings.state_dir)).status(job_id)


def _describe(status: dict[str, Any]) -> str:
    progress = status["progress"]
    total = progress["pairs_total"] if progress["pairs_total"] is not None else "?"
    return (
        f"job {status['job_id']} ({status['function']}): {status['status']}, "
        f"{progress['pairs_done']}/{total} pairs scored, {progress['pairs_failed']} failed"
    )


@click.command(name="job")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Poll until the job finishes, then print its result.")
@click.option(
    "--timeout",
    "wait_timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds --wait polls before it gives up; the job itself goes on.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("table", "json", "csv", "html")),
    default="table",
    show_default=True,
    help="Format of the result, as for `agreement`; json also prints the status of an unfinished job.",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the result to this file, not stdout."
)
@click.pass_obj
def job(
    settings: Settings, job_id: str, wait: bool, wait_timeout: float, output_format: str, output: Path | None
) -> None:
    """Show the status and progress of agreement job JOB_ID, and its result once it succeeded."""
    from custom_metrics.cli import emit, fail

    status = _status(settings, job_id)
    deadline = time.monotonic() + wait_timeout
    while wait and status["status"] not in FINISHED_STATUSES:
        if time.monotonic() >= deadline:
            fail(f"job {job_id} is still {status['status']} after {wait_timeout:g} s; run `custom-metrics job` later")
        click.echo(_describe(status), err=True)
        time.sleep(POLL_INTERVAL_SECONDS)
        status = _status(settings, job_id)
    if status["status"] == STATUS_FAILED:
        fail(f"job {job_id} failed: {status['error']}")
    if status["status"] not in FINISHED_STATUSES:
        click.echo(json.dumps(status, indent=2) if output_format == "json" else _describe(status))
        return
    result = status["result"] if status.get("result") is not None else fetch_result(status["result_url"])
    emit(result, output_format, output)


@click.command(name="run-job", hidden=True)
@click.argument("job_id")
@click.pass_obj
def run_job(settings: Settings, job_id: str) -> None:
    """Run a stored local job to its end (started by `agreement --async`)."""
    LocalJobs(settings.service(), LocalJobStore(settings.state_dir)).run(job_id)


COMMANDS = [job, run_job]
