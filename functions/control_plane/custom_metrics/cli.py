"""The `custom-metrics` command line: check, deploy and run metrics on the local backend or a stack."""

from __future__ import annotations

import codecs
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from custom_metrics import naming
from custom_metrics.backends.local import STATE_DIR_VARIABLE, LocalBackend, default_state_dir
from custom_metrics.errors import ServiceError
from custom_metrics.report import render_csv, render_statistics_table, render_table
from custom_metrics.report_html import render_html
from custom_metrics.service import MetricService
from custom_metrics.source_check import decode_source
from custom_metrics.statistics import project_statistics
from custom_metrics.tasks import PAIR_MODES

FORMATS = ("table", "json", "csv", "html")
ENDPOINT_VARIABLE = "CUSTOM_METRICS_ENDPOINT"


class Settings:
    def __init__(self, state_dir: Path | None, endpoint: str | None, workers: int | None, prefix: str | None) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.endpoint = endpoint
        self.workers = workers
        self.prefix = prefix
        self._service: Any = None

    def service(self) -> Any:
        """Return the local MetricService, or a client of a deployed stack when an endpoint is set."""
        if self._service is None:
            if self.endpoint:
                from custom_metrics.remote import RemoteClient

                self._service = RemoteClient(self.endpoint)
            else:
                self._service = MetricService(
                    LocalBackend(self.state_dir, workers=self.workers), default_prefix=self.prefix
                )
        return self._service

    def close(self) -> None:
        closer = getattr(self._service, "close", None)
        if callable(closer):
            closer()


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def read_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(
            f"{path} is not UTF-8 text: byte {data[exc.start]:#04x} at offset {exc.start} is invalid; save it as UTF-8"
        )
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}; export the project from Label Studio as JSON")


def read_source(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    return decode_source(data, origin=str(path))


def _refuse_overwriting_input(output: Path | None, *inputs: Path | None) -> None:
    if output is None:
        return
    for path in inputs:
        if path is not None and path.exists() and output.exists() and output.samefile(path):
            fail(f"--output {output} is also an input file; choose another path")


def emit(result: dict[str, Any], output_format: str, output: Path | None = None) -> None:
    """Render the agreement result in `output_format` to stdout, or to the file `output`."""
    if output_format == "json":
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    elif output_format == "csv":
        text = render_csv(result)
    elif output_format == "html":
        text = render_html(result)
    else:
        text = render_table(result)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, "utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}; choose another --output path")
    click.echo(f"wrote {output}", err=True)


class Progress:
    """A one-line pair counter on stderr, shown only on a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 200:
            return
        percent = done * 100 // total
        if percent != self._last:
            self._last = percent
            click.echo(f"\rscoring pairs: {done}/{total} ({percent}%)", err=True, nl=done >= total)


class CommandGroup(click.Group):
    """A click group that turns the service's errors into CLI errors without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            detail = exc.details.get("errors")
            if isinstance(detail, list) and len(detail) > 1:
                # Several problems, such as invalid tags, are listed one per line.
                heading = exc.message.split(":")[0]
                raise click.ClickException(f"{heading}:\n  " + "\n  ".join(str(item) for item in detail)) from exc
            raise click.ClickException(exc.message) from exc
        except OSError as exc:
            # A state folder that is a file, unreadable or on a full disk surfaces here.
            where = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(
                f"cannot use{where}: {exc.strerror or exc}; check --state-dir / CUSTOM_METRICS_STATE_DIR"
            ) from exc


@click.group(cls=CommandGroup)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar=STATE_DIR_VARIABLE,
    help="Folder of the local backend's functions [default: ~/.local/share/custom-metrics].",
)
@click.option("--endpoint", envvar=ENDPOINT_VARIABLE, help="URL of a deployed stack's API; requests are SigV4-signed.")
@click.option("--workers", type=click.IntRange(1, 256), help="Local worker processes [default: CPU count].")
@click.option(
    "--prefix", envvar="CUSTOM_METRICS_PREFIX", help="Default function name prefix: custom-metric-<prefix>-<project>."
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the service does to stderr.")
@click.pass_context
def main(
    ctx: click.Context,
    state_dir: Path | None,
    endpoint: str | None,
    workers: int | None,
    prefix: str | None,
    verbose: bool,
) -> None:
    """Custom inter-annotator agreement metrics for Label Studio."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(state_dir, endpoint, workers, prefix)
    ctx.obj = settings
    ctx.call_on_close(settings.close)


pairs_option = click.option(
    "--pairs",
    "pair_mode",
    type=click.Choice(PAIR_MODES),
    default="annotations",
    show_default=True,
    help="Which pairs to score in each task.",
)


def format_option(command: Any) -> Any:
    command = click.option(
        "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to this file, not stdout."
    )(command)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people, json for programs, csv with one row per pair, html for a self-contained report.",
    )(command)


prefix_option = click.option("--prefix", help="Function name prefix for this command (overrides the global one).")


@main.command()
@click.argument("metric", type=click.Path(path_type=Path))
@click.argument("tasks", type=click.Path(path_type=Path), required=False)
@pairs_option
@click.option(
    "--timeout", type=click.IntRange(1, 900), help="Seconds each batch of the trial may run, 1 to 900 [default: 10]."
)
@click.pass_obj
def check(settings: Settings, metric: Path, tasks: Path | None, pair_mode: str, timeout: int | None) -> None:
    """Check METRIC.py and, given TASKS.json, run it on the export's pairs without deploying."""
    source = read_source(metric)
    data = read_json(tasks) if tasks else None
    options: dict[str, Any] = {"pairs": pair_mode}
    if timeout is not None:
        if settings.endpoint:
            fail("--timeout applies to a local check only; drop it or drop --endpoint / CUSTOM_METRICS_ENDPOINT")
        options["timeout"] = timeout
    result = settings.service().check_metric("check", source, data, **options)
    report = result["check"]
    for message in report["errors"]:
        click.echo(f"error: {message}")
    for message in report["warnings"]:
        click.echo(f"warning: {message}")
    if result["trial"] is not None:
        for pair in result["trial"]["pairs"]:
            outcome = (
                f"score {pair['score']:.4f}"
                if pair["error"] is None
                else f"{pair['error']['type']}: {pair['error']['message']}"
            )
            click.echo(f"task {pair['task']}: {pair['first']['by']} vs {pair['second']['by']}: {outcome}")
        click.echo(f"trial: {result['trial']['scored']} pairs scored, {result['trial']['errors']} errors")
        if result["trial"].get("timed_out"):
            trial = result["trial"]
            click.echo(
                f"trial: the timeout of {trial['timeout']} s per batch stopped {trial['timed_out']} of the pairs; "
                "make the metric faster or raise it with --timeout SECONDS"
            )
    if not result["valid"]:
        fail(f"{metric} failed the check")
    click.echo(f"{metric}: ok")


@main.command()
@click.argument("project")
@click.argument("metric", type=click.Path(path_type=Path), required=False)
@click.option("--builtin", help="Deploy a built-in metric instead of a file.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=JSON",
    help="An option of a built-in metric, e.g. iou_threshold=0.7.",
)
@click.option(
    "--tag", "tags", type=(str, str), multiple=True, metavar="NAME VALUE", help="A Lambda tag; repeat for more."
)
@prefix_option
@click.option("--timeout", type=int, help="Seconds a batch may run, 1 to 900 [default: 30].")
@click.option("--memory", "memory_size", type=int, help="Memory per worker in MiB, 128 to 10240 [default: 1024].")
@click.option("--force", is_flag=True, help="Make the new version live without its trial run.")
@click.option(
    "--trial",
    "trial_path",
    type=click.Path(path_type=Path),
    help="Label Studio JSON tasks that the new version must score without an error before it goes live.",
)
@click.pass_obj
def deploy(
    settings: Settings,
    project: str,
    metric: Path | None,
    builtin: str | None,
    options: tuple[str, ...],
    tags: tuple[tuple[str, str], ...],
    prefix: str | None,
    timeout: int | None,
    memory_size: int | None,
    force: bool,
    trial_path: Path | None,
) -> None:
    """Deploy METRIC.py (or --builtin NAME) as the metric of PROJECT.

    A change becomes a new version, which goes live only after it scores the trial pairs without
    an error: those of --trial, else of recently scored tasks, else a small built-in set.
    """
    if (metric is None) == (builtin is None):
        fail("give either a METRIC.py file or --builtin NAME")
    source = read_source(metric) if metric else None
    trial_tasks = read_json(trial_path) if trial_path else None
    result = settings.service().put_metric(
        project,
        code=source,
        builtin=builtin,
        options=_parse_options(options) or None,
        tags=naming.tags_from_pairs(tags),
        prefix=prefix,
        timeout=timeout,
        memory_size=memory_size,
        force=force,
        trial_tasks=trial_tasks,
    )
    for message in result["check"]["warnings"]:
        click.echo(f"warning: {message}", err=True)
    click.echo(f"{result['message']} (code SHA-256 {result['function']['code_sha256']})")


@main.command()
@click.argument("project")
@prefix_option
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.pass_obj
def versions(settings: Settings, project: str, prefix: str | None, output_format: str) -> None:
    """List the versions of PROJECT's metric: number, code SHA-256, date, trial outcome, live."""
    result = settings.service().versions(project, prefix)
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
        return
    for version in result["versions"]:
        live = "  live" if version["live"] else ""
        trial = version["trial"] or "unknown"
        click.echo(f"{version['version']:>4}  {version['code_sha256']}  {version['created']}  trial {trial}{live}")


@main.command()
@click.argument("project")
@click.argument("version", type=click.IntRange(min=1))
@prefix_option
@click.pass_obj
def rollback(settings: Settings, project: str, version: int, prefix: str | None) -> None:
    """Make VERSION of PROJECT's metric the live one again, without a trial."""
    result = settings.service().rollback(project, version, prefix)
    click.echo(f"{result['message']} (code SHA-256 {result['function']['code_sha256']})")


def _parse_options(options: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for option in options:
        key, separator, raw = option.partition("=")
        if not separator or not key:
            fail(f"--option {option!r} is not KEY=VALUE; for example --option iou_threshold=0.7")
        if key in parsed:
            fail(f"--option {key} is given more than once; give each option once")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw  # A bare word is taken as a string.
    return parsed


@main.command(name="list")
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.pass_obj
def list_functions(settings: Settings, output_format: str) -> None:
    """List the deployed metric functions."""
    result = settings.service().list_metrics()
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
        return
    if not result["functions"]:
        click.echo("no metric functions deployed")
    for function in result["functions"]:
        click.echo(f"{function['name']}  {function['status']}  {function['code_sha256']}  {function['last_modified']}")


@main.command()
@click.argument("project")
@prefix_option
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.pass_obj
def get(settings: Settings, project: str, prefix: str | None, output_format: str) -> None:
    """Show PROJECT's metric function: status, code SHA-256, tags, last modified, source."""
    function = settings.service().get_metric(project, prefix)["function"]
    if output_format == "json":
        click.echo(json.dumps({"function": function}, indent=2))
        return
    reason = f" ({function['status_reason']})" if function.get("status_reason") else ""
    click.echo(f"name:          {function['name']}")
    click.echo(f"status:        {function['status']}{reason}")
    if function.get("version") is not None:
        click.echo(f"live version:  {function['version']}")
    if function.get("deploy_status"):
        click.echo(
            f"newer deploy:  {function['deploy_status']} ({function.get('deploy_status_reason') or 'no reason given'})"
        )
    click.echo(f"code SHA-256:  {function['code_sha256']}")
    click.echo(f"last modified: {function['last_modified']}")
    click.echo(f"timeout:       {function['timeout']} s, memory {function['memory_size']} MiB")
    for key, value in function["tags"].items():
        click.echo(f"tag:           {key} = {value}")
    click.echo("source:")
    click.echo(function.get("source") or "(not available)")


@main.command()
@click.argument("project")
@prefix_option
@click.pass_obj
def delete(settings: Settings, project: str, prefix: str | None) -> None:
    """Delete PROJECT's metric function."""
    result = settings.service().delete_metric(project, prefix)
    click.echo(f"deleted {result['deleted']}")


@main.command()
@click.argument("project")
@click.argument("tasks", type=click.Path(path_type=Path), required=False)
@click.option(
    "--from-label-studio", is_flag=True, help="Score the connected Label Studio project's tasks (see `connect`)."
)
@click.option("--per-label", is_flag=True, help="Also ask the metric for per-label scores.")
@click.option("--per-control", is_flag=True, help="Also score each control (from_name) on its own.")
@click.option(
    "--async", "run_async", is_flag=True, help="Start a background job, print its id; see `custom-metrics job`."
)
@pairs_option
@format_option
@prefix_option
@click.pass_obj
def agreement(
    settings: Settings,
    project: str,
    tasks: Path | None,
    from_label_studio: bool,
    per_label: bool,
    per_control: bool,
    run_async: bool,
    pair_mode: str,
    output_format: str,
    output: Path | None,
    prefix: str | None,
) -> None:
    """Score the Label Studio export TASKS.json (or the connected project) with PROJECT's deployed metric."""
    if (tasks is None) == (not from_label_studio):
        fail("give either a TASKS.json export or --from-label-studio")
    _refuse_overwriting_input(output, tasks)
    if from_label_studio:
        from custom_metrics.cli_labelstudio import fetch_export

        data: Any = fetch_export(settings, project)
    else:
        assert tasks is not None
        data = read_json(tasks)
    if run_async:
        from custom_metrics.cli_jobs import start_job

        start_job(settings, project, data, per_label=per_label, per_control=per_control, pairs=pair_mode, prefix=prefix)
        return
    kwargs: dict[str, Any] = {"per_label": per_label, "per_control": per_control, "pairs": pair_mode, "prefix": prefix}
    if not settings.endpoint:
        kwargs["progress"] = Progress()
    result = settings.service().score(project, data, **kwargs)
    emit(result, output_format, output)


@main.command()
@click.argument("project")
@click.argument("tasks", type=click.Path(path_type=Path))
@click.option(
    "--predictions", "include_predictions", is_flag=True, help="Count each model_version's predictions as a rater."
)
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True)
def stats(project: str, tasks: Path, include_predictions: bool, output_format: str) -> None:
    """Compute kappa, alpha and percent agreement for the categorical controls of TASKS.json.

    Runs on this machine and needs no deployed metric.
    """
    naming.function_name(project)
    data = read_json(tasks)
    report = {"project": project, **project_statistics(data, include_predictions=include_predictions)}
    if output_format == "json":
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(render_statistics_table(report), nl=False)


@main.command()
@click.argument("metric", type=click.Path(path_type=Path))
@click.argument("tasks", type=click.Path(path_type=Path))
@click.option("--per-label", is_flag=True, help="Also ask the metric for per-label scores.")
@click.option("--per-control", is_flag=True, help="Also score each control (from_name) on its own.")
@click.option("--timeout", type=click.IntRange(1, 900), help="Seconds each batch may run, 1 to 900 [default: 30].")
@pairs_option
@format_option
@click.pass_obj
def run(
    settings: Settings,
    metric: Path,
    tasks: Path,
    per_label: bool,
    per_control: bool,
    timeout: int | None,
    pair_mode: str,
    output_format: str,
    output: Path | None,
) -> None:
    """Score TASKS.json with METRIC.py in one step, without keeping a deployed function."""
    _refuse_overwriting_input(output, tasks, metric)
    source = read_source(metric)
    data = read_json(tasks)
    with tempfile.TemporaryDirectory(prefix="custom-metrics-run-") as state_dir:
        service = MetricService(LocalBackend(Path(state_dir), workers=settings.workers))
        try:
            # No deploy trial: the tasks are scored right after, and their errors are reported per pair.
            service.put_metric("run", code=source, timeout=timeout, force=True)
            result = service.score(
                "run",
                data,
                per_label=per_label,
                per_control=per_control,
                pairs=pair_mode,
                progress=Progress(),
            )
        finally:
            service.close()
    emit(result, output_format, output)


@main.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; only loopback unless you change it."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME[:PORT]",
    help="Another Host name clients use to reach this server (e.g. for Label Studio in a container); "
    "requests naming any other host are rejected.",
)
@click.pass_obj
def serve(settings: Settings, host: str, port: int, allowed_hosts: tuple[str, ...]) -> None:
    """Serve the control plane's HTTP API over the local backend."""
    from custom_metrics.server import serve as bind

    if settings.endpoint:
        fail("serve runs the local backend; drop --endpoint / CUSTOM_METRICS_ENDPOINT")
    logging.getLogger().setLevel(logging.INFO)
    try:
        server = bind(settings.service(), host, port, allowed_hosts)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port")
    click.echo(
        f"serving on http://{host}:{server.server_port} (state: {settings.state_dir})",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        server.server_close()


@main.command()
@click.argument("project")
@prefix_option
@click.option("--start", type=float, help="Unix seconds [default: one hour before --end].")
@click.option("--end", type=float, help="Unix seconds [default: now].")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.pass_obj
def logs(
    settings: Settings, project: str, prefix: str | None, start: float | None, end: float | None, limit: int
) -> None:
    """Print the log lines of PROJECT's metric function."""
    import time

    end = end if end is not None else time.time()
    start = start if start is not None else end - 3600
    result = settings.service().logs(project, prefix, start, end, limit)
    for row in result["rows"]:
        request = f" [{row['request_id']}]" if row.get("request_id") else ""
        click.echo(f"{row['timestamp']}{request} {row['message']}")
    if not result["rows"]:
        click.echo(f"no log lines for {result['function']} in that window", err=True)


@main.command()
@click.option("--builtin", "name", required=True, help="The built-in metric to print (see `custom-metrics builtins`).")
@click.option("--option", "options", multiple=True, metavar="KEY=JSON", help="Set an option in the printed OPTIONS.")
def init(name: str, options: tuple[str, ...]) -> None:
    """Print a built-in metric's source, to edit and deploy as your own."""
    from custom_metrics import builtins

    click.echo(builtins.render(name, _parse_options(options) or None), nl=False)


@main.command(name="builtins")
def list_builtins() -> None:
    """List the built-in metrics, one line each."""
    from custom_metrics import builtins

    width = max(len(name) for name in builtins.names())
    for name in builtins.names():
        click.echo(f"{name.ljust(width)}  {builtins.summary(name)}")


from custom_metrics import cli_labelstudio  # noqa: E402 (its commands use this module's Settings)

for _command in cli_labelstudio.COMMANDS:
    main.add_command(_command)

from custom_metrics import cli_jobs  # noqa: E402 (its commands use this module's Settings)

for _command in cli_jobs.COMMANDS:
    main.add_command(_command)
