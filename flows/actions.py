"""Actions: turn mart rows into improvement tasks with a named owner, and keep them honest.

Tasks are derived from the warehouse deterministically: the id is a hash of the
natural key (rule + subject + period), so a re-run or a backfill finds the same
task instead of making a new one. While a task for a rule and subject is still
open, the condition firing again in a later period confirms that task rather than
opening a second one (a manager would call that a duplicate); a new period's task
appears only after people closed the old one.

The pipeline owns the evidence, routing, priority and due date; people own status,
assignee and notes, which the pipeline never writes, with two exceptions the domain
demands: a contact task whose customer withdrew consent is suppressed, and a closed
status is stamped with the time the pipeline first saw it (``closed_at``). Every
change, including the people's edits the pipeline notices, is written to
``ops.improvement_task_events``. All times are on the run's as-of timeline
(midnight after ``run_date``), never the wall clock, so a re-run is reproducible
and a re-run of the same date changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import psycopg2
import psycopg2.extensions
import yaml
from psycopg2.extras import Json
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.errors import ConfigError, StageError
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

OPEN_STATUSES = ("open", "in_progress")
CLOSED_STATUSES = ("done", "resolved", "dismissed", "wont_fix")
SUPPRESSED = "suppressed"

Cursor = psycopg2.extensions.cursor


class Rule(BaseModel):
    """One rule of ``tasks.yml``: a trigger over the marts and what the task says."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    subject: Literal["touchpoint", "customer", "segment"]
    trigger: str  # SQL over marts; %(run_date)s and the params are bound
    title: str  # str.format over the trigger's columns
    period: Literal["day", "week", "month"] = "month"
    severity: int = Field(2, ge=1, le=3)
    sla_hours: int = Field(168, ge=1)
    contact: bool = False  # contacts a customer: consent and contact cap apply
    # Opened by the intra-day alerts run as soon as its evidence lands (a hot alert), not
    # only by the nightly run; the nightly run finds it under the same natural key.
    realtime: bool = False
    # Thresholds a trigger reads as %(name)s, so they are tuned here rather than in SQL.
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class RuleSet(BaseModel):
    """The whole rule file: contact limits, the value-at-risk step and the rules."""

    model_config = ConfigDict(extra="forbid")

    contact_cap: int = Field(2, ge=1)
    contact_window_days: int = Field(30, ge=1)
    high_value_at_risk: float = 500.0
    rules: list[Rule]


def load_rules(path: Path) -> RuleSet:
    """Read and validate ``tasks.yml``; every problem names the file and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such task rules file (cxloop.yml: tasks)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        rules = RuleSet.model_validate(data)
    except ValidationError as e:
        msgs = [f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(msgs)) from None
    names = [r.name for r in rules.rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        # The rule name is part of every natural key: two rules with one name would
        # overwrite each other's tasks.
        raise ConfigError(f"{path}: rule names must be unique; repeated: {', '.join(dupes)}")
    return rules


@dataclass(frozen=True)
class Route:
    owner_team: str
    owner_person: str
    escalation_owner: str
    fallback: bool


class Router:
    """Owner routing: the most specific row of touchpoint × region × segment wins."""

    def __init__(self, path: Path):
        try:
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such owner routing file (cxloop.yml: "
                              "reference.owner_routing)") from None
        fallbacks = [r for r in self.rows if r["is_fallback"].lower() == "true"]
        if not fallbacks:
            raise ConfigError(f"{path}: no fallback owner row (is_fallback = true)")
        self.fallback = fallbacks[0]

    def route(self, key: str, region: str | None, segment: str | None) -> Route:
        best, best_score = None, -1
        for r in self.rows:
            if r["is_fallback"].lower() == "true":
                continue
            score = 0
            for field_, value, weight in (("touchpoint_code", key, 4), ("region", region, 2),
                                          ("segment", segment, 1)):
                if r[field_] == "*":
                    continue
                if r[field_] != value:
                    score = -1
                    break
                score += weight
            if r["touchpoint_code"] == "*":
                score = -1  # only the fallback may match any subject
            if score > best_score:
                best, best_score = r, score
        r = best or self.fallback
        return Route(r["owner_team"], r["owner_person"], r["escalation_owner"], best is None)

    def people(self) -> set[str]:
        """Everyone a task may be routed or escalated to (for checks and tests)."""
        return {r["owner_person"] for r in self.rows} | {r["escalation_owner"] for r in self.rows}


def period_of(run_date: date, period: str) -> str:
    if period == "day":
        return run_date.isoformat()
    if period == "week":
        y, w, _ = run_date.isocalendar()
        return f"{y}-W{w:02d}"
    return f"{run_date:%Y-%m}"


def task_id(natural_key: str) -> str:
    return "T" + hashlib.sha256(natural_key.encode()).hexdigest()[:15]


def priority(severity: int, value_at_risk: float | None, high_value: float) -> int:
    """1 is most urgent: rule severity first, one step up when much value is at risk."""
    p = 4 - severity
    if value_at_risk is not None and value_at_risk >= high_value:
        p -= 1
    return max(1, p)


def as_of_for(run_date: date) -> datetime:
    """The run's clock: midnight after ``run_date`` (UTC), so every re-run sees the same time."""
    return datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if hasattr(v, "__float__") and not isinstance(v, (int, float, bool)):
        return float(v)
    return v


def _title(rule: Rule, hit: dict[str, Any]) -> str:
    """The rule's title; a null in a formatted column must not fail the whole run."""
    values = {k: _jsonable(v) for k, v in hit.items()}
    try:
        return rule.title.format(**values)
    except (KeyError, ValueError, TypeError, IndexError):
        safe = {k: (float("nan") if v is None else v) for k, v in values.items()}
        try:
            return rule.title.format(**safe)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            log.warning("rule %s: title template failed (%s); using a plain title", rule.name, e)
            return f"{rule.name}: {hit['subject_id']}"


@dataclass
class TaskStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    escalated: int = 0
    suppressed: int = 0
    fallback_routed: int = 0
    people_edits: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


def _event(cur: Cursor, tid: str, run_id: str, as_of: datetime, event: str,
           detail: dict[str, Any]) -> None:
    cur.execute("insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of) "
                "values (%s, %s, %s, %s, %s)",
                (tid, run_id, event, Json(_jsonable(detail)), as_of))


def derive_tasks(wh: Warehouse, rules: RuleSet, router: Router, run_date: date,
                 run_id: str) -> TaskStats:
    """Evaluate every rule as of ``run_date`` and upsert its tasks, in one transaction.

    The order matters: people's edits are noticed first (so a task closed today is not
    escalated today), then each rule's hits are upserted and vanished conditions marked,
    then consent is re-checked, and overdue tasks escalate last.
    """
    stats = TaskStats()
    as_of = as_of_for(run_date)
    with wh.transaction() as cur:
        # One deriving run at a time: a second waits instead of inserting the same task.
        cur.execute("select pg_advisory_xact_lock(hashtext('cxloop.improvement_tasks'))")
        stats.people_edits = _notice_people_edits(cur, as_of, run_id)
        for rule in rules.rules:
            hits = _evaluate(cur, rule, run_date)
            confirmed: list[str] = []
            for hit in hits:
                tid = _upsert(cur, rule, rules, router, hit, run_date, as_of, run_id, stats)
                confirmed.append(tid)
            stats.by_rule[rule.name] = len(hits)
            stats.cleared += _clear_vanished(cur, rule, confirmed, run_date, as_of, run_id)
        stats.suppressed += _withdrawn_consent(cur, as_of, run_id)
        stats.escalated = _escalate(cur, as_of, run_id)
    return stats


def _evaluate(cur: Cursor, rule: Rule, run_date: date) -> list[dict[str, Any]]:
    """The trigger's rows, one per subject, in a stable order."""
    params = {**rule.params, "run_date": run_date}
    try:
        cur.execute("savepoint rule")
        cur.execute(f"select * from ({rule.trigger}) t", params)
    except (psycopg2.Error, KeyError) as e:
        msg = (e.diag.message_primary or str(e)) if isinstance(e, psycopg2.Error) \
            else f"unknown parameter %({e.args[0]})s (add it to the rule's params)"
        raise StageError(
            f"tasks.yml rule {rule.name!r}: its trigger failed: {msg.strip()}; fix the SQL and re-run"
        ) from None
    cols = [d.name for d in cur.description]
    if "subject_id" not in cols:
        raise StageError(f"tasks.yml rule {rule.name!r}: the trigger must return a subject_id column")
    rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    cur.execute("release savepoint rule")
    by_subject: dict[str, dict[str, Any]] = {}
    for row in rows:
        sid = str(row["subject_id"])
        if sid in by_subject:
            # Two rows for one subject would flip the evidence on every run.
            log.warning("rule %s: several rows for subject %s; keeping the first", rule.name, sid)
            continue
        by_subject[sid] = row
    return [by_subject[k] for k in sorted(by_subject)]


def _upsert(cur: Cursor, rule: Rule, rules: RuleSet, router: Router, hit: dict[str, Any],
            run_date: date, as_of: datetime, run_id: str, stats: TaskStats) -> str:
    """Create the hit's task, or confirm the one already tracking this rule and subject."""
    subject_id = str(hit["subject_id"])
    evidence = {k: _jsonable(v) for k, v in hit.items()}
    key = hit.get("touchpoint_code") or rule.subject
    route = router.route(str(key), hit.get("region"), hit.get("segment"))
    var = hit.get("value_at_risk")
    var = float(var) if var is not None else None
    base = priority(rule.severity, var, rules.high_value_at_risk)
    title = _title(rule, hit)
    period = str(hit["period"]) if hit.get("period") else period_of(run_date, rule.period)
    nk = f"{rule.name}|{subject_id}|{period}"

    existing = _tracking_task(cur, rule, subject_id, nk, run_date)
    if existing is None:
        tid = task_id(nk)
        reason = _suppression(cur, rules, hit, tid, as_of) if rule.contact else None
        status = SUPPRESSED if reason else "open"
        cur.execute(
            """insert into ops.improvement_tasks (task_id, natural_key, rule, subject_type,
                 subject_id, period, title, evidence, owner_team, owner_person,
                 routed_to_fallback, escalation_owner, priority, base_priority, value_at_risk,
                 due_at, status, seen_status, suppressed_reason, is_contact, created_at,
                 updated_at, created_run_id, confirmed_run_id, last_confirmed_on,
                 condition_checked_on)
               values (%(tid)s, %(nk)s, %(rule)s, %(st)s, %(sid)s, %(period)s, %(title)s, %(ev)s,
                 %(team)s, %(person)s, %(fb)s, %(esc)s, %(prio)s, %(prio)s, %(var)s, %(due)s,
                 %(status)s, %(status)s, %(supp)s, %(contact)s, %(as_of)s, %(as_of)s, %(run)s,
                 %(run)s, %(run_date)s, %(run_date)s)""",
            {"tid": tid, "nk": nk, "rule": rule.name, "st": rule.subject, "sid": subject_id,
             "period": period, "title": title, "ev": Json(evidence), "team": route.owner_team,
             "person": route.owner_person, "fb": route.fallback, "esc": route.escalation_owner,
             "prio": base, "var": var, "due": as_of + timedelta(hours=rule.sla_hours),
             "status": status, "supp": reason, "contact": rule.contact, "as_of": as_of,
             "run": run_id, "run_date": run_date},
        )
        stats.created += 1
        stats.suppressed += int(bool(reason))
        stats.fallback_routed += int(route.fallback)
        _event(cur, tid, run_id, as_of, SUPPRESSED if reason else "created",
               {"owner_team": route.owner_team, "owner": route.owner_person,
                "fallback": route.fallback, "priority": base, "reason": reason,
                "due_at": as_of + timedelta(hours=rule.sla_hours)})
        return tid

    tid = existing["task_id"]
    stats.fallback_routed += int(route.fallback)
    if existing["condition_checked_on"] is not None and run_date < existing["condition_checked_on"]:
        # A later date already evaluated this task (a backfill re-run in order): an older
        # run must not roll its evidence or condition back.
        stats.unchanged += 1
        return tid
    changes: list[tuple[str, dict[str, Any]]] = []
    if existing["evidence"] != json.loads(json.dumps(evidence)) or existing["title"] != title:
        changes.append(("evidence_updated", {"evidence": evidence}))
    if (existing["owner_team"], existing["owner_person"]) != (route.owner_team, route.owner_person):
        changes.append(("rerouted", {"from": existing["owner_person"], "to": route.owner_person,
                                     "owner_team": route.owner_team, "fallback": route.fallback}))
    if existing["base_priority"] != base:
        changes.append(("reprioritised", {"from": existing["base_priority"], "to": base}))
    if not existing["condition_active"]:
        changes.append(("condition_returned", {"as_of": run_date}))
    if not changes and existing["last_confirmed_on"] is not None \
            and existing["last_confirmed_on"] >= run_date:
        stats.unchanged += 1
        return tid
    # Pipeline-owned fields only; status, assignee and notes are never in this list.
    cur.execute(
        """update ops.improvement_tasks set title = %(title)s, evidence = %(ev)s,
             owner_team = %(team)s, owner_person = %(person)s, routed_to_fallback = %(fb)s,
             escalation_owner = %(esc)s, base_priority = %(prio)s,
             priority = greatest(1, %(prio)s - escalation_level), value_at_risk = %(var)s,
             condition_active = true, last_confirmed_on = greatest(last_confirmed_on, %(run_date)s),
             condition_checked_on = greatest(condition_checked_on, %(run_date)s),
             confirmed_run_id = case when %(changed)s then %(run)s else confirmed_run_id end,
             updated_at = case when %(changed)s then %(as_of)s else updated_at end
           where task_id = %(tid)s""",
        {"title": title, "ev": Json(evidence), "team": route.owner_team,
         "person": route.owner_person, "fb": route.fallback, "esc": route.escalation_owner,
         "prio": base, "var": var, "run_date": run_date, "changed": bool(changes), "run": run_id,
         "as_of": as_of, "tid": tid},
    )
    for event, detail in changes:
        _event(cur, tid, run_id, as_of, event, detail)
    if changes:
        stats.updated += 1
    else:
        stats.unchanged += 1
    return tid


def _tracking_task(cur: Cursor, rule: Rule, subject_id: str, nk: str,
                   run_date: date) -> dict[str, Any] | None:
    """The task that already tracks this rule and subject, if any.

    In order: the task with this very natural key (whatever its status); a still-open
    task of an earlier period; a suppressed one whose condition never cleared; a task
    people closed during the current period (the fix needs time to show in the data,
    so the same condition is not raised again the day it was closed). A task closed in
    an earlier period does not count: the condition still holding a period later is a
    new task.
    """
    cur.execute(
        """select task_id, title, evidence, owner_team, owner_person, base_priority,
                  condition_active, last_confirmed_on, condition_checked_on, natural_key, status,
                  created_at,
                  coalesce(closed_at, %(as_of)s) as closed_at
           from ops.improvement_tasks
           where rule = %(rule)s and subject_id = %(sid)s
           order by created_at desc, task_id""",
        {"rule": rule.name, "sid": subject_id, "as_of": as_of_for(run_date)},
    )
    cols = [d.name for d in cur.description]
    tasks = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    current = period_of(run_date, rule.period)

    def closed_this_period(t: dict[str, Any]) -> bool:
        closed_on = (t["closed_at"] - timedelta(days=1)).date()  # as-of is midnight after
        return t["status"] in CLOSED_STATUSES and period_of(closed_on, rule.period) == current

    for accept in (lambda t: t["natural_key"] == nk,
                   lambda t: t["status"] in OPEN_STATUSES,
                   lambda t: t["status"] == SUPPRESSED and t["condition_active"],
                   closed_this_period):
        for t in tasks:
            if accept(t):
                return t
    return None


def _suppression(cur: Cursor, rules: RuleSet, hit: dict[str, Any], tid: str,
                 as_of: datetime) -> str | None:
    """Why a new customer-contact task must not reach the customer, or None.

    Consent comes from the trigger (missing means no); the cap counts the customer's
    contact tasks that were not suppressed, created in the rolling window ending at the
    run's as-of time (``created_at`` is on that timeline too, so a backfill counts the
    contacts its earlier dates made and none from later dates).
    """
    if not hit.get("marketing_consent"):
        return "no consent to contact"
    cur.execute(
        "select count(*) from ops.improvement_tasks where is_contact and subject_id = %s "
        "and status <> %s and task_id <> %s and created_at > %s and created_at <= %s",
        (str(hit["subject_id"]), SUPPRESSED, tid, as_of - timedelta(days=rules.contact_window_days),
         as_of),
    )
    n = cur.fetchone()[0]
    if n >= rules.contact_cap:
        return (f"contact cap: already {n} contact task(s) in {rules.contact_window_days} days "
                f"(cap {rules.contact_cap})")
    return None


def _clear_vanished(cur: Cursor, rule: Rule, confirmed: list[str], run_date: date,
                    as_of: datetime, run_id: str) -> int:
    """Mark the rule's tasks whose condition no longer holds; never delete them.

    Only tasks that existed as of this run and that no later date has evaluated are
    touched, so re-deriving an earlier date neither clears what later dates created or
    confirmed nor makes events.
    """
    cur.execute(
        "update ops.improvement_tasks set condition_active = false, updated_at = %(as_of)s, "
        "condition_checked_on = %(run_date)s "
        "where rule = %(rule)s and condition_active and created_at <= %(as_of)s "
        "and (condition_checked_on is null or condition_checked_on <= %(run_date)s) "
        "and not (task_id = any(%(ids)s)) returning task_id",
        {"as_of": as_of, "run_date": run_date, "rule": rule.name, "ids": confirmed},
    )
    cleared = sorted(r[0] for r in cur.fetchall())
    for tid in cleared:
        _event(cur, tid, run_id, as_of, "condition_cleared", {"as_of": as_of})
    return len(cleared)


def _notice_people_edits(cur: Cursor, as_of: datetime, run_id: str) -> int:
    """Log status and assignee changes people made since the last run, and stamp closures.

    People edit the table directly (or through the ticketing tool's sync); the
    pipeline compares with what it last saw so that every change lands in the event
    log and a closure gets ``closed_at`` for the effect mart.
    """
    # Tasks from before these columns existed: start tracking from what they hold now.
    cur.execute("update ops.improvement_tasks set seen_status = status, seen_assignee = assignee "
                "where seen_status is null")
    cur.execute(
        """select task_id, seen_status, status, seen_assignee, assignee
           from ops.improvement_tasks
           where status is distinct from seen_status or assignee is distinct from seen_assignee
           order by task_id for update"""
    )
    rows = cur.fetchall()
    for tid, seen_status, status, seen_assignee, assignee in rows:
        if status != seen_status:
            _event(cur, tid, run_id, as_of, "status_changed",
                   {"from": seen_status, "to": status, "by": "people"})
        if assignee != seen_assignee:
            _event(cur, tid, run_id, as_of, "assignee_changed",
                   {"from": seen_assignee, "to": assignee, "by": "people"})
    if rows:
        cur.execute(
            """update ops.improvement_tasks set seen_status = status, seen_assignee = assignee,
                 closed_at = case when status = any(%(closed)s) then coalesce(closed_at, %(as_of)s)
                                  else null end
               where task_id = any(%(ids)s)""",
            {"closed": list(CLOSED_STATUSES), "as_of": as_of, "ids": [r[0] for r in rows]},
        )
    return len(rows)


def _withdrawn_consent(cur: Cursor, as_of: datetime, run_id: str) -> int:
    """Suppress still-open contact tasks of customers who no longer consent.

    Consent is checked when a task is created; a customer who withdraws it later must
    not be called on an old task either. This is the one status the pipeline
    overrides after people may have touched it, and the event records what it was.
    """
    cur.execute("select to_regclass('marts.dim_customers') is not null")
    if not cur.fetchone()[0]:
        return 0
    cur.execute(
        """update ops.improvement_tasks t
           set status = %(supp)s, seen_status = %(supp)s, updated_at = %(as_of)s,
               suppressed_reason = 'consent withdrawn after the task was created'
           from marts.dim_customers c
           where c.customer_id = t.subject_id and c.is_current
             and not coalesce(c.marketing_consent, false)
             and t.is_contact and t.status = any(%(open)s)
           returning t.task_id, t.owner_person""",
        {"supp": SUPPRESSED, "as_of": as_of, "open": list(OPEN_STATUSES)},
    )
    rows = sorted(cur.fetchall())
    for tid, owner in rows:
        _event(cur, tid, run_id, as_of, SUPPRESSED,
               {"reason": "consent withdrawn after the task was created", "owner": owner})
    return len(rows)


def _escalate(cur: Cursor, as_of: datetime, run_id: str) -> int:
    """Escalate each overdue open task once per breach; a re-run finds nothing to do.

    A breach is one due date passing: ``escalated_due_at`` remembers the due date
    already escalated, so re-running the same or a later date does not escalate again,
    while a task whose due date is moved and missed again escalates again.
    """
    cur.execute(
        """update ops.improvement_tasks
           set escalation_level = escalation_level + 1,
               priority = greatest(1, coalesce(base_priority, priority) - escalation_level - 1),
               escalated_to = coalesce(escalation_owner, owner_person),
               escalated_due_at = due_at, updated_at = %(as_of)s
           where status = any(%(open)s) and due_at < %(as_of)s
             and escalated_due_at is distinct from due_at
           returning task_id, escalation_level, priority, escalated_to, due_at""",
        {"as_of": as_of, "open": list(OPEN_STATUSES)},
    )
    rows = sorted(cur.fetchall())
    for tid, level, prio, to, due in rows:
        _event(cur, tid, run_id, as_of, "escalated",
               {"level": level, "priority": prio, "escalated_to": to, "overdue_since": due})
    return len(rows)


# --- reading tasks back (CLI, export) ---------------------------------------------------

EXPORT_COLUMNS = (
    "task_id", "rule", "subject_type", "subject_id", "period", "title", "status", "priority",
    "owner_team", "owner_person", "routed_to_fallback", "assignee", "escalated_to",
    "escalation_level", "value_at_risk", "due_at", "created_at", "updated_at", "closed_at",
    "condition_active", "suppressed_reason", "evidence",
)


def list_tasks(wh: Warehouse, owner: str | None = None, status: str | None = None,
               rule: str | None = None) -> list[dict[str, Any]]:
    """Tasks for people and ticketing tools, most urgent first.

    ``owner`` matches the owner team, the owner person, the assignee or the person
    escalated to, so "what is on my desk" is one filter. Evidence is the trigger's
    columns: customer ids and scores, no e-mail, phone or name (the marts carry none).
    """
    cur_sql = (
        f"select {', '.join(EXPORT_COLUMNS)} from ops.improvement_tasks "
        "where (%(owner)s::text is null or %(owner)s in (owner_team, owner_person, "
        "coalesce(assignee, ''), coalesce(escalated_to, ''))) "
        "and (%(status)s::text is null or status = %(status)s) "
        "and (%(rule)s::text is null or rule = %(rule)s) "
        "order by (status = any(%(open)s)) desc, priority, due_at, task_id"
    )
    with wh.transaction() as cur:
        cur.execute(cur_sql, {"owner": owner, "status": status, "rule": rule,
                              "open": list(OPEN_STATUSES)})
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def export_rows(rows: list[dict[str, Any]], fmt: Literal["csv", "json"]) -> str:
    """Tasks as CSV (evidence as a JSON string) or a JSON array, with ISO timestamps."""
    clean = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
    if fmt == "json":
        return json.dumps(clean, indent=2, ensure_ascii=False) + "\n"
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in clean:
        w.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                    for k, v in r.items()})
    return buf.getvalue()
