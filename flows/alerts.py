"""The intra-day alerts run and the nightly notifications: hot alerts within the hour.

``run_alerts`` picks up the files landed under today's date folder for the alerts
entities (survey responses by default), and a SQL source's rows of today so far,
through the nightly run's own extract, validate and load functions, so they become the
same batches with the same lineage and the nightly run skips them as loaded. It then
refreshes only the dbt models the realtime rules read (the entities' staging views and
any model named after a realtime rule), not the whole project, derives the
``realtime: true`` rules' tasks and notifies their owners at once. The nightly run
(flows/pipeline.py) calls ``after_nightly_tasks``: escalations, one digest per owner,
and recovery-survey invitations for resolved contact tasks.

A task on a customer who must not be contacted is opened as suppressed by the same rule
logic as at night (consent, contact cap) and no one is told to contact them: the
notification is recorded as ``suppressed`` and sent to no one, and such tasks never
appear in a digest.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow  # noqa: E402

from flows import actions, extract, load, notify, outbound, report, transform  # noqa: E402
from flows.config import Settings, load_settings  # noqa: E402
from flows.config import SqlSource as _SqlSource  # noqa: E402
from flows.errors import StageError  # noqa: E402
from flows.task_messages import (  # noqa: E402, F401 - the alerts flow's messages
    notify_escalations,
    notify_new_alerts,
    send_digests,
)
from flows.warehouse import Warehouse, open_warehouse, run_lock  # noqa: E402

log = logging.getLogger(__name__)

def realtime_rules(rules: actions.RuleSet) -> actions.RuleSet:
    return rules.model_copy(update={"rules": [r for r in rules.rules if r.realtime]})


def alert_models(settings: Settings, rules: actions.RuleSet) -> list[str]:
    """The dbt models an alerts run refreshes: the staging models of its entities and any
    model named after a realtime rule (``..__<rule>``), found in the project by name."""
    models_dir = transform.DBT_DIR / "models"
    names = set()
    for entity in settings.alerts.entities:
        names |= {p.stem for p in models_dir.glob(f"staging/*/stg_*__{entity}.sql")}
    for rule in rules.rules:
        names |= {p.stem for p in models_dir.rglob(f"*__{rule.name}.sql")}
    return sorted(names)


def views_current(wh: Warehouse, models: list[str], run_date: date) -> bool:
    """True when every model is a staging view and the last run that built them (a nightly
    or backfill, or an alerts run's ``dbt run``) built them as of ``run_date``: a view reads
    the new rows by itself, so the alerts run can skip dbt altogether."""
    with wh.transaction() as cur:
        # Staging models are tables kept incrementally (macros/incremental_staging.sql):
        # only a view reads the new rows by itself; a table is rebuilt with them.
        cur.execute("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                    "where n.nspname = 'staging' and c.relkind = 'v' and c.relname = any(%s)",
                    (list(models),))
        if cur.fetchone()[0] != len(set(models)):
            return False
        cur.execute("""select end_date from ops.pipeline_runs
                       where status like 'completed%' and finished_at is not null
                         and (flow in ('nightly', 'backfill') or stages ? 'dbt run')
                       order by finished_at desc limit 1""")
        row = cur.fetchone()
    return row is not None and row[0] == run_date


def derive_realtime(wh: Warehouse, settings: Settings, run_date: date,
                    run_id: str) -> actions.TaskStats:
    """Only the realtime rules' tasks, through the nightly run's own ``derive_tasks``."""
    rules = actions.load_rules(settings.tasks)
    router = actions.Router(settings.reference.owner_routing)
    if "only_realtime" in inspect.signature(actions.derive_tasks).parameters:
        return actions.derive_tasks(wh, rules, router, run_date, run_id, only_realtime=True)
    return actions.derive_tasks(wh, realtime_rules(rules), router, run_date, run_id)


def after_nightly_tasks(wh: Warehouse, settings: Settings, run_date: date, run_id: str,
                        warnings: list[str]) -> str:
    """The nightly hook after the tasks stage: escalations, digests, recovery invitations.

    Never fails the run: a channel's problem is a line in ``warnings`` (and a row of
    ``ops.notifications``).
    """
    try:
        n = notify.Notifier(wh, settings, run_id)
        link = settings.alerts.task_link
        try:
            notify_escalations(n, wh, link)
            digests = send_digests(n, wh, run_date)
        finally:
            n.close()
        warnings += n.stats.lines()
        told = (f"{digests} digest(s); {n.stats.sent} sent, {n.stats.failed} failed, "
                f"{n.stats.not_sent} not sent")
    except Exception as e:  # the tasks are written; telling people must not undo the run
        log.exception("notifications failed")
        warnings.append(f"notifications: not sent: {e}")
        told = "failed"
    try:
        inv = outbound.write_recovery_invitations(wh, settings, run_date, run_id)
        warnings += inv.lines()
        return f"{told}; {inv.invited} recovery invitation(s)"
    except Exception as e:
        log.exception("recovery invitations failed")
        warnings.append(f"recovery surveys: not written: {e}")
        return f"{told}; recovery invitations failed"


def _timed(s: report.RunSummary, name: str, fn: Callable[[], Any],
           detail: Callable[[Any], str] = lambda r: "") -> Any:
    s.current_stage = name
    t0 = time.monotonic()
    result = fn()
    s.stages[name] = {"seconds": round(time.monotonic() - t0, 2), "detail": detail(result)}
    return result


def alert_batches(settings: Settings, day: date, entities: list[str],
                  now: datetime | None = None) -> list[extract.Batch]:
    """What an alerts run reads: the files landed so far under the day's folder, and each
    SQL source's rows of the day up to now (in the source's zone). A SQL read is the day
    so far, so the next hour's read, and the night's whole day, replace it like a
    re-delivered file, and a read that finds nothing new is the same batch (skipped)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    out: list[extract.Batch] = []
    for name, src in sorted(settings.sources.items()):
        if isinstance(src, _SqlSource):
            wanted = [e for e in entities if e in src.queries]
            if not wanted:
                continue
            zone = ZoneInfo(src.timezone or settings.timezone)
            moment = now or datetime.now(UTC)
            if moment.tzinfo is None:  # a naive moment is UTC
                moment = moment.replace(tzinfo=UTC)
            moment = moment.astimezone(zone).replace(tzinfo=None)
            until = min(moment, datetime.combine(day + timedelta(days=1), datetime.min.time()))
            out += extract.find_sql_batches(name, src, day, until=until, entities=wanted)
        else:
            out += [b for b in extract.find_file_batches(Path(settings.landing), name, src, day)
                    if b.entity in entities]
    return out


def run_alerts(settings: Settings, run_date: date, now: datetime | None = None
               ) -> report.RunSummary:
    """One alerts run for ``run_date`` (today): load new files, derive hot alerts, notify."""
    from flows.validate import gx_runner_for

    notify.load_contacts(settings.reference.owner_contacts)  # a ConfigError before loading
    wh = open_warehouse(Path(settings.home), settings.warehouse_url, settings.database)
    run_id = f"alerts-{run_date:%Y%m%d}-{datetime.now(UTC):%H%M%S}-{uuid.uuid4().hex[:6]}"
    s = report.RunSummary(run_id=run_id, flow="alerts", start_date=run_date, end_date=run_date,
                          settings=settings.redacted())
    with run_lock(wh, settings.lock_timeout_seconds, run_id):
        report.mark_stale_runs(wh)
        report.start_run(wh, s)
        try:
            load.refresh_reference(wh, settings)
            entities = list(settings.alerts.entities)
            batches = _timed(s, "extract",
                             lambda: alert_batches(settings, run_date, entities, now),
                             lambda r: f"{len(r)} batches found")
            home = str(Path(settings.home).resolve())

            def ingest() -> list[load.BatchResult]:
                groups = [(e, [b for b in batches if b.entity == e]) for e in entities]
                if not any(mine for _, mine in groups):
                    return []
                runner = gx_runner_for(home, wh.sqlalchemy_url())
                return [r for e, mine in groups if mine
                        for r in load.ingest_entity(wh, runner, e, mine, run_id)]

            s.batches = _timed(s, "validate+load", ingest,
                               lambda r: f"{sum(x.rows_loaded for x in r):,} rows loaded")
            rules = realtime_rules(actions.load_rules(settings.tasks))
            if s.count("loaded") and rules.rules:
                models = alert_models(settings, rules)
                if views_current(wh, models, run_date):
                    s.stages["dbt run"] = {"seconds": 0.0, "skipped": True, "detail":
                                           f"skipped, {', '.join(models)} already as of {run_date}"}
                else:
                    out = _timed(s, "dbt run", lambda: transform.run_dbt(
                        wh, settings, ["run", "--select", " ".join(models)], run_date),
                        lambda r: f"{len(models)} models: {', '.join(models)}")
                    if not out.success:
                        raise StageError("dbt run of the alerts models failed:\n  "
                                         + "\n  ".join(out.failures[:10]))
                stats = _timed(s, "tasks", lambda: derive_realtime(wh, settings, run_date, run_id),
                               lambda r: f"{r.created} created, {r.suppressed} suppressed, "
                                         f"{r.escalated} escalated")
                s.tasks = {"created": stats.created, "updated": stats.updated,
                           "escalated": stats.escalated, "suppressed": stats.suppressed}
            else:
                why = "no realtime rules in tasks.yml" if not rules.rules else "no new batches"
                s.stages["tasks"] = {"seconds": 0.0, "detail": f"skipped, {why}", "skipped": True}

            def send() -> notify.Notifier:
                n = notify.Notifier(wh, settings, run_id, now=now)
                try:
                    notify_new_alerts(n, wh, run_id, settings.alerts.task_link)
                    notify_escalations(n, wh, settings.alerts.task_link)
                finally:
                    n.close()
                return n

            n = _timed(s, "notify", send, lambda n: f"{n.stats.sent} sent, {n.stats.failed} "
                       f"failed, {n.stats.deferred} deferred, {n.stats.not_sent} not sent")
            s.warnings += n.stats.lines()
            s.status = s.final_status()
        except Exception as e:
            s.status, s.error = "failed", str(e)
            report.finish_run(wh, s, "")
            raise
        report.finish_run(wh, s, markdown(s))
    return s


def markdown(s: report.RunSummary) -> str:
    lines = [f"# cxloop alerts {s.start_date}", f"Status **{s.status}** · run `{s.run_id}`", "",
             f"- batches loaded {s.count('loaded')}, skipped {s.count('skipped')}, "
             f"rejected {s.count('rejected')}; rows loaded {s.rows_loaded:,}"]
    lines += [f"- {k}: {v.get('detail', '')} ({v.get('seconds', 0):.1f} s)"
              for k, v in s.stages.items()]
    lines += [f"- warning: {w}" for w in s.warnings]
    lines += [f"- rejected: {b.error}" for b in s.rejected]
    return "\n".join(lines) + "\n"


def _alerts_name() -> str:
    from prefect.runtime import flow_run

    return f"alerts {flow_run.parameters.get('run_date') or 'today'}"


@flow(name="alerts", flow_run_name=_alerts_name)
def alerts_flow(run_date: date | None = None, config: str | None = None,
                landing: str | None = None) -> dict[str, Any]:
    """Hot alerts: load today's new survey files, open the realtime rules' tasks, notify."""
    from zoneinfo import ZoneInfo

    settings = load_settings(Path(config) if config else None, landing=landing)
    run_date = run_date or datetime.now(ZoneInfo(settings.timezone)).date()
    return run_alerts(settings, run_date).as_dict()
