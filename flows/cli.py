"""The ``cxloop`` command line.

Every command ends with one clear message and a non-zero exit on bad input
(missing config, unreachable warehouse, no extracts), never a bare traceback;
``--debug`` shows the traceback for bug reports.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's temporary server can take longer than its 20 s default to start on a busy
# 2-core machine; a run should wait rather than fail.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from flows.errors import CxloopError  # noqa: E402

app = typer.Typer(
    help="cxloop: CRM and survey extracts → validated warehouse → touchpoint marts → "
    "survival churn scores → improvement tasks with owners.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
warehouse_app = typer.Typer(help="The PostgreSQL warehouse (embedded by default).",
                            no_args_is_help=True)
demo_app = typer.Typer(help="Demo data: `cxloop demo` runs the whole pipeline on it.")
quarantine_app = typer.Typer(help="Rows that failed validation.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(demo_app, name="demo")
app.add_typer(quarantine_app, name="quarantine")
model_app = typer.Typer(help="The survival churn model.", no_args_is_help=True)
tasks_app = typer.Typer(help="Improvement tasks.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(tasks_app, name="tasks")

console = Console()
err_console = Console(stderr=True)
DEBUG = {"on": False}

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q",
                     help="Print nothing on success (errors still go to stderr).")]
TaskRunnerOpt = Annotated[str, typer.Option(
    "--task-runner", help="default (this process) or dask (entities in parallel on a Dask "
    "cluster; needs the [dask] extra).")]
DaskAddressOpt = Annotated[str | None, typer.Option(
    "--dask-address", help="Scheduler of an existing Dask cluster (default: a LocalCluster).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                      help="Path of cxloop.yml (default ./cxloop.yml if present).")]
LandingOpt = Annotated[Path | None, typer.Option("--landing",
                       help="Landing folder of extracts; overrides cxloop.yml.")]


def handle_errors(fn):
    """Turn cxloop errors into one message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CxloopError as e:
            if DEBUG["on"]:
                raise
            err_console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _settings(config: Path | None, landing: Path | None = None):
    from flows.config import load_settings

    settings = load_settings(config, landing=str(landing) if landing else None)
    # Prefect's local state lives beside the warehouse, not in the user's home.
    prefect_home = Path(settings.home).resolve() / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    return settings


def _open(config: Path | None):
    """Settings and the (started, migrated) warehouse they name."""
    from flows.warehouse import open_warehouse

    s = _settings(config)
    return s, open_warehouse(Path(s.home), s.warehouse_url, s.database, timezone=s.timezone)


def _today(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def _quiet_libraries() -> None:
    for name in ("great_expectations", "prefect", "httpx", "dbt", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    DEBUG["on"] = debug
    # Prefect logs every task state (and failures with tracebacks) to the console; the CLI
    # shows its own progress and one clear message instead. The Prefect API still gets all.
    if not debug:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    level = logging.INFO if debug else logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # libraries set their own logger levels; the handler decides
        if not debug:
            # Prefect logs a failing task's traceback; the CLI prints one clear message instead
            # (the Prefect API still receives the full log).
            handler.addFilter(lambda record: not record.name.startswith("prefect"))
    _quiet_libraries()


def _run(settings, start: date, end: date, flow_name: str, **kw: Any) -> dict[str, Any]:
    """Run a flow in-process and return its summary dict."""
    from flows import pipeline

    # The flow re-reads the same file with the same environment, so every stage gets the
    # settings resolved here; the landing folder may be a command-line override.
    params = {"config": str(settings.config_path) if settings.config_path else None,
              "landing": str(Path(settings.landing).resolve())}
    if settings.warehouse_url:
        os.environ["CXLOOP_WAREHOUSE_URL"] = settings.warehouse_url
    os.environ["CXLOOP_HOME"] = str(Path(settings.home).resolve())
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    quiet = kw.get("quiet")
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True)
    status = contextlib.nullcontext() if quiet else progress
    stage_bar = progress.add_task(f"{flow_name}: starting Prefect", total=None)
    batch_bar = None

    def show(stage: str, event: str) -> None:
        # Stages drive one line; the batches of a backfill (entity by entity, date by
        # date) drive a bar, so a long load shows where it is.
        nonlocal batch_bar
        if quiet:
            return
        if stage == "batches":
            batch_bar = progress.add_task("batches", total=int(event))
        elif stage == "batch" and batch_bar is not None:
            progress.update(batch_bar, advance=1, description=f"batch {event}")
        elif event == "start":
            progress.update(stage_bar, description=f"{flow_name} {start}..{end}: {stage}")

    def on_failure(summary) -> None:
        # What was loaded and quarantined stays worth knowing when a later stage fails:
        # print it (the error message follows), unless the caller asked for quiet/JSON.
        progress.stop()
        if not quiet:
            err_console.print(f"[red]{flow_name} {start}..{end} failed[/] in stage "
                              f"{summary.current_stage or 'start-up'}; what it did so far:",
                              highlight=False)
            _print_run(summary.as_dict())

    pipeline.PROGRESS_LISTENERS.append(show)
    pipeline.SUMMARY_LISTENERS.append(on_failure)
    runner = _task_runner(kw.get("task_runner", "default"), kw.get("dask_address"))
    try:
        with status:
            from flows.prefect_server import tie_temporary_server

            tie_temporary_server()  # dies with this process, even on kill -9
            if flow_name == "nightly":
                nightly = pipeline.nightly.with_options(task_runner=runner) if runner \
                    else pipeline.nightly
                return nightly(run_date=start, force_refit=kw.get("force_refit", False), **params)
            backfill_flow = pipeline.backfill.with_options(task_runner=runner) if runner \
                else pipeline.backfill
            return backfill_flow(start=start, end=end, entities=kw.get("entities"),
                                 full_refresh=kw.get("full_refresh", False), **params)
    finally:
        pipeline.PROGRESS_LISTENERS.remove(show)
        pipeline.SUMMARY_LISTENERS.remove(on_failure)


def _task_runner(kind: str, address: str | None):
    """None for Prefect's default runner, or a DaskTaskRunner (LocalCluster unless an address)."""
    if kind == "default":
        if address:
            raise CxloopError("--dask-address needs --task-runner dask")
        return None
    if kind != "dask":
        raise CxloopError(f"--task-runner must be default or dask, not {kind!r}")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise CxloopError("--task-runner dask needs prefect-dask: pip install -e '.[dask]'") from None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True,
                                          "threads_per_worker": 1})


def _print_run(summary: dict[str, Any]) -> None:
    b = summary["batches"]
    console.print(f"[bold]{summary['flow']}[/] {summary['start_date']}..{summary['end_date']}: "
                  f"[bold]{summary['status']}[/] — batches loaded {b['loaded']}, skipped "
                  f"{b['skipped']} (unchanged), rejected {b['rejected']}, retried "
                  f"{b.get('retried', 0)} (rejected before); rows loaded "
                  f"{summary['rows_loaded']:,}, quarantined {summary['rows_quarantined']:,}")
    t = Table("stage", "seconds", "detail", title="stages")
    for name, st in summary["stages"].items():
        t.add_row(name, f"{st['seconds']:.1f}", str(st.get("detail", "")))
    console.print(t)
    for r in summary["rejections"]:
        err_console.print(f"[red]rejected:[/] {r['error']}", highlight=False)
    for c in summary.get("corrections", []):
        console.print(f"correction: {c['file']} replaces {', '.join(b[:12] for b in c['replaces'])}"
                      f": {c['rows_added']} added, {c['rows_removed']} removed, "
                      f"{c['rows_changed']} changed", highlight=False)
    for w in summary.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for k, v in summary.get("docs", {}).items():
        if v:
            console.print(f"{k}: {v}")


def _output(summary: dict[str, Any], as_json: bool, quiet: bool) -> None:
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        _print_run(summary)


def _exit_for(summary: dict[str, Any]) -> None:
    if summary["status"] == "completed_with_rejections":
        err_console.print("[yellow]completed with rejections[/]: the rejected files were not "
                          "loaded; fix or re-deliver them and re-run.")
        raise typer.Exit(4)


@app.command()
@handle_errors
def run(
    run_date: Annotated[str | None, typer.Option("--date", "-d",
            help="Run date YYYY-MM-DD (default: today in the configured timezone).")] = None,
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    force_refit: Annotated[bool, typer.Option(help="Refit the churn model now.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    task_runner: TaskRunnerOpt = "default",
    dask_address: DaskAddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the nightly pipeline for one date: extract, validate, load, dbt, churn, tasks."""
    settings = _settings(config, landing)
    d = _parse_date(run_date, "--date") if run_date else _today(settings.timezone)
    summary = _run(settings, d, d, "nightly", force_refit=force_refit, task_runner=task_runner,
                   dask_address=dask_address, quiet=quiet or as_json)
    _output(summary, as_json, quiet)
    _exit_for(summary)


@app.command()
@handle_errors
def backfill(
    start: Annotated[str, typer.Option("--start", help="First date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last date YYYY-MM-DD (inclusive).")],
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    entities: Annotated[str | None, typer.Option(
        help="Comma-separated entities to load (default all).")] = None,
    full_refresh: Annotated[bool, typer.Option(help="Rebuild incremental marts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    task_runner: TaskRunnerOpt = "default",
    dask_address: DaskAddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Load every date of a range in order (skipping loaded batches), analyse once, then
    derive tasks as of each date."""
    settings = _settings(config, landing)
    s, e = _parse_date(start, "--start"), _parse_date(end, "--end")
    if e < s:
        raise CxloopError(f"--end {e} is before --start {s}")
    ents = [x.strip() for x in entities.split(",")] if entities else None
    if ents:
        from flows.entities import ENTITIES

        unknown = [x for x in ents if x not in ENTITIES]
        if unknown:
            raise CxloopError(f"unknown entities {', '.join(unknown)}; known: "
                              f"{', '.join(ENTITIES)}")
    summary = _run(settings, s, e, "backfill", entities=ents, full_refresh=full_refresh,
                   task_runner=task_runner, dask_address=dask_address, quiet=quiet or as_json)
    _output(summary, as_json, quiet)
    _exit_for(summary)


def _parse_date(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CxloopError(f"{flag} {value!r} is not a date; use YYYY-MM-DD") from None


# --- demo ---------------------------------------------------------------------------

DEMO_START = date(2026, 7, 1)


@demo_app.callback(invoke_without_command=True)
@handle_errors
def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="Customers in the demo base.")] = 3000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    config: ConfigOpt = None,
) -> None:
    """Generate demo extracts, backfill them, and print what a manager would read."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import timedelta

    from flows import demo as demo_data

    settings = _settings(config)
    out = Path(settings.home).resolve() / "demo" / "landing"
    console.print(f"generating demo extracts: {customers:,} customers × {days} days → {out}")
    gen = demo_data.generate(out, customers=customers, days=days, start=DEMO_START, seed=seed)
    end = DEMO_START + timedelta(days=days - 1)
    settings = settings.model_copy(update={"landing": out})
    summary = _run(settings, DEMO_START, end, "backfill")
    _print_run(summary)
    _print_manager_summary(settings)
    console.print(f"\nwarehouse: [bold]cxloop warehouse url[/] → psql; truth: {gen.truth_path}")
    _exit_for(summary)


@demo_app.command("generate")
@handle_errors
def demo_generate(
    out: Annotated[Path, typer.Option(help="Output landing folder.")] = Path("landing"),
    customers: Annotated[int, typer.Option(help="Customers in the base.")] = 3000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 120,
    start: Annotated[str, typer.Option(help="First extract date.")] = DEMO_START.isoformat(),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    faults: Annotated[float, typer.Option(help="Share of rows/files with injected faults.")] = 0.0,
    profile: Annotated[str, typer.Option(
        help="Industry shape: demo (default) or utility (own headers, domain and a yes/no "
        "goal; writes its cxloop.yml to <out>/_config/).")] = "demo",
) -> None:
    """Write demo CRM and survey extracts with a known ground truth (and faults on request)."""
    from flows.demo_profiles import profile as demo_profile

    if fmt not in ("csv", "parquet"):
        raise CxloopError(f"--format must be csv or parquet, not {fmt!r}")
    try:
        g = demo_profile(profile).generate(out, customers=customers, days=days,
                                           start=_parse_date(start, "--start"), seed=seed,
                                           fmt=fmt, faults=faults)
    except ValueError as e:  # an option this profile does not support (e.g. parquet)
        raise CxloopError(f"--profile {profile}: {e}") from None
    console.print(f"wrote {len(g.files)} files to {out}; ground truth {g.truth_path}")
    if profile != "demo":
        console.print(f"configuration for these extracts: {Path(out) / '_config' / 'cxloop.yml'}")


def _print_manager_summary(settings) -> None:
    from flows import report
    from flows.warehouse import open_warehouse

    wh = open_warehouse(Path(settings.home), settings.warehouse_url, settings.database,
                        migrate_schema=False, timezone=settings.timezone)
    hl = report.highlights(wh)
    for key, title, headers in report.HIGHLIGHTS:
        t = Table(*headers, title=title)
        for r in hl[key]:
            t.add_row(*["" if v is None else str(v) for v in r])
        console.print(t)


@app.command("report")
@handle_errors
def report_cmd(
    config: ConfigOpt = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open",
                            help="Open the report in a browser.")] = True,
) -> None:
    """Show the HTML report of the latest run (path, and open it in a browser)."""
    import webbrowser

    s = _settings(config)
    latest = Path(s.home).resolve() / "reports" / "latest.html"
    if not latest.exists():
        raise CxloopError(f"no report yet in {latest.parent}; run `cxloop run` or `cxloop demo`")
    print(latest)
    if open_browser:
        webbrowser.open(latest.as_uri())


# Stage-specific commands live beside their stage and register on the apps above.
from flows import (  # noqa: E402,F401
    cli_alerts,
    cli_batches,
    cli_deploy,
    cli_model,
    cli_quarantine,
    cli_tasks,
    cli_warehouse,
)
from flows.cli_deploy import deployment_env  # noqa: E402,F401 - tests and tools import it here

if __name__ == "__main__":
    sys.exit(app())
