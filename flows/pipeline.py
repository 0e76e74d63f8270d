"""The Prefect flows: ``nightly(run_date)`` and ``backfill(start, end)``.

Flows only sequence tasks; each task wraps one plain function of a stage
module (extract, load, transform, drivers, churn, actions, report) that tests
call without Prefect. A backfill loads each date's batches in date order and
then transforms and scores once for the whole range (one dbt build, not one per
day); the task candidates are built for every date of the range, and tasks are
derived date by date, so a backfill opens what each night would have.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from flows import (  # noqa: E402
    actions,
    churn,
    drivers,
    extract,
    html_report,
    load,
    memory,
    report,
    transform,
)
from flows.config import Settings, load_settings  # noqa: E402
from flows.docs_site import DocsSite  # noqa: E402
from flows.entities import ENTITIES  # noqa: E402
from flows.errors import CxloopError, NoExtractsError  # noqa: E402
from flows.failpoints import failpoint  # noqa: E402
from flows.transient import is_transient  # noqa: E402
from flows.validate import gx_runner_for  # noqa: E402
from flows.warehouse import Warehouse, open_warehouse, run_lock  # noqa: E402

Progress = Callable[[str, str], None]
# Terminal front ends register here to hear "stage started/done" (flow parameters
# must be serialisable, so a callback cannot travel as one).
PROGRESS_LISTENERS: list[Progress] = []
# ... and here to receive the run summary when a run fails, so what was loaded and
# quarantined is shown even if a later stage stopped the run (success returns it).
SUMMARY_LISTENERS: list[Callable[[report.RunSummary], None]] = []

# What each analysis stage needs loaded: without it the stage is skipped with one line
# in the summary (a survey-only programme has no churn; a CRM-only one no drivers).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "drivers": ("responses", "item_ratings"),
    "churn": ("customers", "subscriptions"),
}


def missing_inputs(wh: Warehouse, stage: str) -> str | None:
    """``"skipped, no subscriptions extract"`` when a stage's input entities hold no rows."""
    from psycopg2 import sql

    empty = []
    with wh.transaction() as cur:
        for name in STAGE_INPUTS.get(stage, ()):
            cur.execute(sql.SQL("select exists (select 1 from raw.{})").format(sql.Identifier(name)))
            if not cur.fetchone()[0]:
                empty.append(name)
    if not empty:
        return None
    return f"skipped, no {' or '.join(empty)} extract" + ("s" if len(empty) > 1 else "")


def _notify(stage: str, event: str) -> None:
    for listener in PROGRESS_LISTENERS:
        listener(stage, event)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what can heal by itself: a lost connection, a lock timeout, a
    serialization failure or deadlock (flows/transient.py); never a broken file, a
    failing dbt test or a bad query, which would fail the same way again."""
    try:
        state.result()
    except Exception as e:
        retry = is_transient(e)
        logging.getLogger(__name__).warning("%s failed (%s): %s", task_run.name,
                                 "transient, retrying" if retry else "not retried",
                                 str(e).splitlines()[0] if str(e) else type(e).__name__)
        return retry
    return False


RETRY = {"retries": 2, "retry_delay_seconds": [2, 10], "retry_condition_fn": _transient}


@task(name="extract", cache_policy=NONE)
def extract_task(settings: Settings, days: list[date],
                 entities: list[str] | None) -> list[extract.Batch]:
    batches = list(extract.find_batches(settings, days, entities))
    if not batches:
        raise NoExtractsError(
            f"no extracts in {Path(settings.landing).resolve()} for "
            f"{days[0]}" + (f"..{days[-1]}" if len(days) > 1 else "")
            + f"; expected files like <landing>/crm/customers/{days[0]}/*.csv "
            "(run `cxloop demo generate` for sample data, or pass --landing)"
        )
    return batches


@task(name="ingest", task_run_name="ingest {entity}", cache_policy=NONE, **RETRY)
def ingest_task(wh: Warehouse, home: str, entity: str, batches: list[extract.Batch],
                run_id: str) -> list[load.BatchResult]:
    # The GX context is built per process (it cannot travel to a Dask worker).
    return load.ingest_entity(
        wh, gx_runner_for(home, wh.sqlalchemy_url()), entity, batches, run_id,
        on_batch=lambda r: _notify("batch", f"{r.entity} {r.extract_date}: {r.status}"))


def _parallel() -> bool:
    """True under a distributed task runner (Dask): entities then load side by side."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and type(ctx.task_runner).__name__ == "DaskTaskRunner"


@task(name="dbt-build", task_run_name="dbt build {label}", cache_policy=NONE, **RETRY)
def dbt_task(wh: Warehouse, settings: Settings, run_date: date, label: str,
             select: str | None = None, exclude: str | None = None,
             full_refresh: bool = False,
             extra_vars: dict[str, object] | None = None) -> dict[str, int]:
    return transform.build(wh, settings, run_date, select=select, exclude=exclude,
                           full_refresh=full_refresh, extra_vars=extra_vars).counts


@task(name="drivers", cache_policy=NONE, **RETRY)
def drivers_task(wh: Warehouse, settings: Settings) -> int:
    return drivers.run_drivers(wh, settings)


@task(name="churn-model", cache_policy=NONE, **RETRY)
def churn_task(wh: Warehouse, settings: Settings, run_date: date,
               force_refit: bool, run_id: str) -> churn.ChurnResult:
    c = settings.churn
    return churn.run_churn(wh, run_date, every_days=c.refit_every_days, force=force_refit,
                           min_events=c.min_events, min_concordance=c.min_concordance,
                           reports_dir=report_dir(settings, run_id),
                           landmark_cfg=churn.LandmarkConfig.from_settings(c))


def report_dir(settings: Settings, run_id: str) -> Path:
    """Where a run's report and plots go: ``<home>/reports/<run_id>``."""
    return Path(settings.home).resolve() / "reports" / run_id


@task(name="improvement-tasks", cache_policy=NONE, **RETRY)
def actions_task(wh: Warehouse, settings: Settings, start: date, end: date,
                 run_id: str) -> actions.TaskStats:
    """Derive tasks for each date of the range in order, the last with every rule
    (earlier dates only the rules that look back, ``backfill: each_date``)."""
    return actions.derive_range(wh, actions.load_rules(settings.tasks), start, end, run_id)


def check_task_config(settings: Settings) -> list[str]:
    """The rule file and the capacity table, before anything is loaded (exit 2 when wrong);
    returns warnings about capacity rows that apply to no task."""
    rules = actions.load_rules(settings.tasks)
    router = actions.Router(settings.reference.owner_routing)
    return actions.load_capacity(settings.reference.owner_capacity, rules, router)[1]


@task(name="docs", cache_policy=NONE)
def docs_task(wh: Warehouse, settings: Settings, run_date: date,
              extra_vars: dict[str, object] | None = None) -> DocsSite:
    return transform.docs_generate(wh, settings, run_date, extra_vars)


def _timed(summary: report.RunSummary, name: str,
           fn: Callable[[], Any], detail: Callable[[Any], str] = lambda r: "") -> Any:
    _notify(name, "start")
    summary.current_stage = name
    failpoint(f"stage:{name}")
    t0 = time.monotonic()
    result = fn()
    seconds = round(time.monotonic() - t0, 2)
    peak = memory.peak_rss_mb()
    memory.release()  # what the stage freed goes back before the next one starts
    summary.stages[name] = {"seconds": seconds, "detail": detail(result), "peak_rss_mb": peak,
                            "rss_mb_after": memory.rss_mb()}
    _notify(name, "done")
    return result


def _unless_missing(wh: Warehouse, summary: report.RunSummary, name: str,
                    fn: Callable[[], Any], detail: Callable[[Any], str] = lambda r: "") -> Any:
    """Run a stage through ``_timed``, or record why it was skipped and return None."""
    reason = missing_inputs(wh, name)
    if reason is None:
        return _timed(summary, name, fn, detail)
    summary.stages[name] = {"seconds": 0.0, "detail": reason, "skipped": True}
    _notify(name, "skipped")
    get_run_logger().info("%s: %s", name, reason)
    return None


def run_range(settings: Settings, start: date, end: date, flow_name: str,
              entities: list[str] | None = None, full_refresh: bool = False,
              force_refit: bool = False) -> report.RunSummary:
    """The body shared by both flows: load every date in order, analyse once, derive tasks
    date by date."""
    days = extract.dates_between(start, end)
    task_warnings = check_task_config(settings)
    wh = open_warehouse(Path(settings.home), settings.warehouse_url, settings.database,
                        timezone=settings.timezone)
    run_id = f"{flow_name}-{end:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    s = report.RunSummary(run_id=run_id, flow=flow_name, start_date=start, end_date=end,
                          settings=settings.redacted())
    logger = get_run_logger()
    limit = settings.stage_timeout_seconds

    def timed_out(t: Any) -> Any:
        return t.with_options(timeout_seconds=limit)

    with run_lock(wh, settings.lock_timeout_seconds, run_id):
        stale = report.mark_stale_runs(wh)
        if stale:
            logger.warning("marked %d run(s) left 'running' by a crash as crashed", stale)
        report.start_run(wh, s)
        try:
            load.refresh_reference(wh, settings)
            batches = _timed(s, "extract",
                             lambda: extract_task(settings, days, entities),
                             lambda r: f"{len(r)} batches found")
            s.warnings += task_warnings
            s.warnings += extract.misplaced_input(settings, days)
            s.warnings += extract.missing_expected(settings, days, batches, entities)
            for w in s.warnings:
                logger.warning("%s", w)
            home = str(Path(settings.home).resolve())
            _notify("batches", str(len(batches)))

            def ingest_all() -> list[load.BatchResult]:
                groups = [(name, [b for b in batches if b.entity == name]) for name in ENTITIES]
                groups = [(name, mine) for name, mine in groups if mine]
                if _parallel():
                    futures = [timed_out(ingest_task).submit(wh, home, name, mine, run_id)
                               for name, mine in groups]
                    return [r for f in futures for r in f.result()]
                return [r for name, mine in groups
                        for r in timed_out(ingest_task)(wh, home, name, mine, run_id)]

            # One set of vars for every dbt invocation of the run: dbt re-parses the whole
            # project (3-6 s here) whenever the vars differ from its last invocation's, so
            # the first date of the range, which only the task candidates read, goes to all.
            run_vars: dict[str, object] = {"task_dates_from": start.isoformat()}
            validated_since = datetime.now(UTC)
            s.batches = _timed(s, "validate+load", ingest_all,
                               lambda r: f"{sum(x.rows_loaded for x in r):,} rows loaded")
            s.docs["gx_data_docs"] = gx_runner_for(home, wh.sqlalchemy_url()).build_docs(
                validated_since) or ""
            for b in s.rejected:
                logger.error("rejected batch: %s", b.error)
            _timed(s, "dbt build",
                   lambda: timed_out(dbt_task)(wh, settings, end, "models",
                                               exclude=transform.AFTER_PYTHON,
                                               full_refresh=full_refresh,
                                               extra_vars=run_vars),
                   lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
            _unless_missing(wh, s, "drivers", lambda: timed_out(drivers_task)(wh, settings),
                            lambda r: f"{r} rows")
            res = _unless_missing(
                wh, s, "churn",
                lambda: timed_out(churn_task)(wh, settings, end, force_refit, run_id),
                lambda r: f"{r.scored} scored; {r.note}")
            if res is not None:
                s.model_version, s.model_note = res.model_version, res.note
            else:
                s.model_note = s.stages["churn"]["detail"]
            _timed(s, "dbt build after scores",
                   lambda: timed_out(dbt_task)(wh, settings, end, "after python",
                                    select=transform.AFTER_PYTHON,
                                    exclude=transform.AFTER_TASKS, full_refresh=full_refresh,
                                    extra_vars=run_vars),
                   lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
            stats = _timed(s, "tasks",
                           lambda: timed_out(actions_task)(wh, settings, start, end, run_id),
                           lambda r: "; ".join([f"{r.created} created, {r.updated} updated, "
                                                f"{r.cleared} cleared, {r.escalated} escalated, "
                                                f"{r.backlog} in backlog", *r.team_lines()]))
            _timed(s, "dbt build after tasks",
                   lambda: timed_out(dbt_task)(wh, settings, end, "after tasks",
                                               select=transform.AFTER_TASKS,
                                               full_refresh=full_refresh,
                                               extra_vars=run_vars),
                   lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
            s.tasks = {"created": stats.created, "updated": stats.updated,
                       "escalated": stats.escalated, "cleared": stats.cleared,
                       "suppressed": stats.suppressed, "fallback_routed": stats.fallback_routed,
                       "backlog": stats.backlog,
                       "teams": {k: vars(v) for k, v in sorted(stats.teams.items())}}
            if flow_name == "nightly":  # digests, escalations, recovery surveys (flows/alerts.py)
                from flows.alerts import after_nightly_tasks

                _timed(s, "notifications",
                       lambda: after_nightly_tasks(wh, settings, end, run_id, s.warnings), str)
            site = _timed(s, "docs", lambda: timed_out(docs_task)(wh, settings, end, run_vars),
                          DocsSite.detail)
            s.docs["dbt_docs"] = str(site.index)
            if site.error:
                s.warnings.append(f"docs: {site.error}")
                logger.warning("docs: %s", site.error)
            s.status = s.final_status()
        except Exception as e:
            s.status = "failed"
            s.error = str(e)
            report.finish_run(wh, s, "")
            for listener in SUMMARY_LISTENERS:
                listener(s)
            raise
        hl = report.highlights(wh)
        try:
            s.docs["html_report"] = str(html_report.write_report(wh, s, hl, Path(settings.home)))
        except Exception as e:  # the report is a view of the run, not part of its result
            logger.warning("could not write the HTML report: %s", e)
        md = report.markdown(s, hl)
        report.finish_run(wh, s, md)
    try:
        create_markdown_artifact(markdown=md, key=f"{flow_name}-summary",
                                 description=f"cxloop {flow_name} {start}..{end}")
    except Exception as e:  # an artifact is a courtesy; the run record is in the warehouse
        logger.warning("could not create the Prefect artifact: %s", e)
    return s


def _nightly_name() -> str:
    from prefect.runtime import flow_run

    d = flow_run.parameters.get("run_date")
    return f"nightly {d or 'today'}"


@flow(name="nightly", flow_run_name=_nightly_name)
def nightly(run_date: date | None = None, config: str | None = None,
            landing: str | None = None, force_refit: bool = False) -> dict[str, Any]:
    """Load the extracts of ``run_date`` (default: today in the configured timezone),
    rebuild marts, score churn, derive tasks."""
    from zoneinfo import ZoneInfo

    settings = load_settings(Path(config) if config else None, landing=landing)
    run_date = run_date or datetime.now(ZoneInfo(settings.timezone)).date()
    return run_range(settings, run_date, run_date, "nightly",
                     force_refit=force_refit).as_dict()


@flow(name="backfill", flow_run_name="backfill {start}..{end}")
def backfill(start: date, end: date, entities: list[str] | None = None,
             full_refresh: bool = False, config: str | None = None,
             landing: str | None = None) -> dict[str, Any]:
    """Load every date of the range in order (skipping what is loaded), analyse once, then
    derive tasks as of each date."""
    settings = load_settings(Path(config) if config else None, landing=landing)
    return run_range(settings, start, end, "backfill", entities=entities,
                     full_refresh=full_refresh).as_dict()


logging.getLogger("great_expectations").setLevel(logging.WARNING)
__all__ = ["nightly", "backfill", "run_range", "CxloopError"]
