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
from flows.warehouse import Warehouse, open_warehouse, run_lock  # noqa: E402

log = logging.getLogger(__name__)

TASK_COLUMNS = ("task_id", "rule", "title", "evidence", "owner_team", "owner_person",
                "priority", "due_at", "status", "suppressed_reason", "escalated_to",
                "escalated_due_at", "subject_id")
LIST_LIMIT = 25  # lines per digest section; the rest is a count


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


def _tasks(wh: Warehouse, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with wh.transaction() as cur:
        cur.execute(f"select {', '.join(TASK_COLUMNS)} from ops.improvement_tasks t where {where} "
                    "order by priority, due_at, task_id", params)
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _by_owner(contacts: notify.Contacts, *owners: str | None
              ) -> list[tuple[str, list[notify.Contact]]]:
    """(owner, contacts) for each of the owners that has contacts; the first owner with
    none when no one has any (so the message is recorded as having no contact)."""
    out = [(o, contacts.by_owner[o]) for o in dict.fromkeys(owners) if o and o in contacts.by_owner]
    return out or [(next(o for o in owners if o), [])]


def notify_new_alerts(n: notify.Notifier, wh: Warehouse, run_id: str,
                      link: str | None) -> int:
    """One immediate message per hot-alert task this run opened, to its person and team."""
    tasks = _tasks(wh, "created_run_id = %(run)s", {"run": run_id})
    quiet: list[tuple[notify.Message, str]] = []
    batch: list[tuple[notify.Message, list[notify.Contact]]] = []
    for t in tasks:
        key = f"alert|{t['task_id']}"
        if t["status"] == actions.SUPPRESSED:
            quiet.append((notify.Message(key, "immediate", t["owner_person"], "", "",
                                         [t["task_id"]]),
                          f"customer must not be contacted: {t['suppressed_reason']}"))
            continue
        body = notify.task_text(t, link)
        batch += [(notify.Message(key, "immediate", owner, f"[cxloop] {t['title']}", body,
                                  [t["task_id"]]), contacts)
                  for owner, contacts in _by_owner(n.contacts, t["owner_person"], t["owner_team"])]
    n.record_all(quiet, "suppressed")
    n.send_all(batch)
    return len(tasks)


# The escalation key of a breach in SQL: as ``_escalation_key`` writes it (isoformat in UTC,
# microseconds only when there are any), so the query finds the breaches still to tell.
_ESCALATION_KEY_SQL = """'escalation|' || t.task_id || '|'
    || to_char(t.escalated_due_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || case when cast(date_part('microseconds', t.escalated_due_at) as bigint) %% 1000000 <> 0
            then to_char(t.escalated_due_at at time zone 'UTC', '.US') else '' end
    || '+00:00'"""


def _escalation_key(t: dict[str, Any]) -> str:
    return f"escalation|{t['task_id']}|{t['escalated_due_at'].astimezone(UTC).isoformat()}"


def notify_escalations(n: notify.Notifier, wh: Warehouse, link: str | None) -> int:
    """The escalation owner hears of each breach once (the key holds the missed due date).

    Breaches already dealt with (every row of their key final) are left out in SQL: after a
    backfill there are 100k+ of them, and an hourly run must not read them all again.
    """
    tasks = _tasks(wh, f"""status = any(%(open)s) and escalated_due_at is not null
                     and not exists (
                         select 1 from (
                           select message_key from ops.notifications
                           where message_key like 'escalation|%%' group by message_key
                           having bool_and(status = any(%(final)s))) done
                         where done.message_key = {_ESCALATION_KEY_SQL})""",
                   {"open": list(actions.OPEN_STATUSES), "final": list(notify.FINAL)})
    batch: list[tuple[notify.Message, list[notify.Contact]]] = []
    for t in tasks:
        body = "Escalated to you (overdue since {:%Y-%m-%d %H:%M}).\n".format(
            t["escalated_due_at"]) + notify.task_text(t, link)
        to = t["escalated_to"] or t["owner_person"]
        batch += [(notify.Message(_escalation_key(t), "immediate", owner,
                                  f"[cxloop] escalated: {t['title']}", body, [t["task_id"]]),
                   contacts) for owner, contacts in _by_owner(n.contacts, to)]
    n.send_all(batch)
    return len(tasks)


def _already_told(wh: Warehouse) -> set[tuple[str, str]]:
    """(owner, item) pairs a sent message carried: task ids, and escalation keys."""
    with wh.transaction() as cur:
        cur.execute("""select owner, item from (
                         select owner, message_key as item from ops.notifications
                         where status = 'sent' and kind = 'immediate'
                         union all
                         select owner, task_id from ops.notifications
                         where status = 'sent' and kind = 'immediate' and task_id is not null
                         union all
                         select owner, unnest(task_ids) from ops.notifications
                         where status = 'sent' and kind = 'digest') x""")
        return {(o, i) for o, i in cur.fetchall()}


def _section(title: str, tasks: list[dict[str, Any]]) -> list[str]:
    if not tasks:
        return []
    lines = [f"{title} ({len(tasks)}):"]
    lines += [f"- {t['task_id']} P{t['priority']} due {t['due_at']:%Y-%m-%d}: {t['title']}"
              for t in tasks[:LIST_LIMIT]]
    if len(tasks) > LIST_LIMIT:
        lines.append(f"- ... and {len(tasks) - LIST_LIMIT} more (cxloop tasks list --owner ...)")
    return lines + [""]


def _closed_section(tasks: list[dict[str, Any]]) -> list[str]:
    if not tasks:
        return []
    lines = [f"Closed with effect ({len(tasks)}):"]
    lines += [f"- {t['task_id']} closed {t['closed_at']:%Y-%m-%d}: {t['title']} -- "
              f"{outbound.effect_text(t)}" for t in tasks[:LIST_LIMIT]]
    if len(tasks) > LIST_LIMIT:
        lines.append(f"- ... and {len(tasks) - LIST_LIMIT} more (marts.mart_task_effects)")
    return lines + [""]


def send_digests(n: notify.Notifier, wh: Warehouse, run_date: date) -> int:
    """One digest per owner for the night: new (not yet told), escalated, overdue tasks,
    and closed with effect (resolved customer tasks and their recovery-survey answer).

    Suppressed tasks are never listed. A task an owner already had as an immediate alert
    is not "new" to them again; overdue tasks are a reminder every night. A closed task is
    listed once when closed and once more when its recovery answer arrives (the item
    holds the response id).
    """
    as_of = actions.as_of_for(run_date)
    told = _already_told(wh)
    open_tasks = _tasks(wh, "status = any(%(open)s) and created_at <= %(as_of)s",
                        {"open": list(actions.OPEN_STATUSES), "as_of": as_of})
    digests: dict[str, dict[str, list[dict[str, Any]]]] = {}
    contacts_of: dict[str, list[notify.Contact]] = {}

    def add(owners: tuple[str | None, ...], section: str, t: dict[str, Any], item: str) -> None:
        for owner, contacts in _by_owner(n.contacts, *owners):
            if section != "overdue" and (owner, item) in told:
                continue
            contacts_of[owner] = contacts
            d = digests.setdefault(owner, {"new": [], "escalated": [], "overdue": [],
                                           "closed": []})
            d[section].append({**t, "_item": item})

    for t in open_tasks:
        add((t["owner_person"], t["owner_team"]), "new", t, t["task_id"])
        if t["escalated_due_at"] is not None:
            add((t["escalated_to"] or t["owner_person"],), "escalated", t, _escalation_key(t))
        if t["due_at"] < as_of:
            add((t["owner_person"], t["owner_team"]), "overdue", t, t["task_id"])
    for t in outbound.closed_effects(wh):
        add((t["owner_person"], t["owner_team"]), "closed", t,
            f"closed|{t['task_id']}|{t['response_id'] or ''}")
    sent = 0
    for owner, d in sorted(digests.items()):
        if not (d["new"] or d["escalated"] or d["overdue"] or d["closed"]):
            continue
        body = "\n".join([f"cxloop digest for {owner}, {run_date}", ""]
                         + _section("New", d["new"]) + _section("Escalated", d["escalated"])
                         + _section("Overdue", d["overdue"]) + _closed_section(d["closed"]))
        items = sorted({t["_item"] for s in ("new", "escalated", "closed") for t in d[s]})
        n.send(notify.Message(f"digest|{run_date}", "digest", owner,
                              f"[cxloop] {len(d['new'])} new, {len(d['escalated'])} escalated, "
                              f"{len(d['overdue'])} overdue"
                              + (f", {len(d['closed'])} closed" if d["closed"] else ""), body,
                              items), contacts_of[owner])
        sent += 1
    return sent


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
