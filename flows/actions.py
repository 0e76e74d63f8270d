"""Actions: turn mart rows into improvement tasks with a named owner, and keep them honest.

Tasks are derived from the warehouse deterministically: the id is a hash of the
natural key (rule + subject + period), so a re-run or a backfill finds the same
task instead of making a new one. The pipeline owns the evidence, priority and
due date; people own status, assignee and notes, which an upsert never touches.
Every change is written to ``ops.improvement_task_events``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg2
import yaml
from psycopg2.extras import Json
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.errors import ConfigError, StageError
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

OPEN_STATUSES = ("open", "in_progress")


class Rule(BaseModel):
    """One rule of ``tasks.yml``: a trigger over the marts and what the task says."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    subject: Literal["touchpoint", "customer", "segment"]
    trigger: str  # SQL over marts; %(run_date)s is bound
    title: str  # str.format over the trigger's columns
    period: Literal["day", "week", "month"] = "month"
    severity: int = Field(2, ge=1, le=3)
    sla_hours: int = Field(168, ge=1)
    contact: bool = False  # contacts a customer: consent and contact cap apply


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_cap: int = Field(2, ge=1)
    contact_window_days: int = Field(30, ge=1)
    high_value_at_risk: float = 500.0
    rules: list[Rule]


def load_rules(path: Path) -> RuleSet:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such task rules file (cxloop.yml: tasks)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        return RuleSet.model_validate(data)
    except ValidationError as e:
        msgs = [f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(msgs)) from None


@dataclass(frozen=True)
class Route:
    owner_team: str
    owner_person: str
    escalation_owner: str
    fallback: bool


class Router:
    """Owner routing: the most specific row of touchpoint × region × segment wins."""

    def __init__(self, path: Path):
        with open(path, newline="", encoding="utf-8") as f:
            self.rows = list(csv.DictReader(f))
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


def _jsonable(v: Any) -> Any:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "__float__") and not isinstance(v, (int, float, bool)):
        return float(v)
    return v


@dataclass
class TaskStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    escalated: int = 0
    suppressed: int = 0
    fallback_routed: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


def _event(cur, tid: str, run_id: str, event: str, detail: dict[str, Any]) -> None:
    cur.execute("insert into ops.improvement_task_events (task_id, run_id, event, detail) "
                "values (%s, %s, %s, %s)", (tid, run_id, event, Json(detail)))


def derive_tasks(wh: Warehouse, rules: RuleSet, router: Router, run_date: date,
                 run_id: str) -> TaskStats:
    """Evaluate every rule as of ``run_date`` and upsert its tasks, in one transaction."""
    stats = TaskStats()
    as_of = datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC)
    with wh.transaction() as cur:
        for rule in rules.rules:
            try:
                cur.execute("savepoint rule")
                cur.execute(f"select * from ({rule.trigger}) t", {"run_date": run_date})
            except psycopg2.Error as e:
                raise StageError(
                    f"tasks.yml rule {rule.name!r}: its trigger failed: "
                    f"{(e.diag.message_primary or str(e)).strip()}; fix the SQL and re-run"
                ) from None
            cols = [d.name for d in cur.description]
            hits = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            period = period_of(run_date, rule.period)
            keys_now: list[str] = []
            for hit in sorted(hits, key=lambda h: str(h["subject_id"])):
                subject_id = str(hit["subject_id"])
                nk = f"{rule.name}|{subject_id}|{period}"
                keys_now.append(nk)
                evidence = {k: _jsonable(v) for k, v in hit.items()}
                key = hit.get("touchpoint_code") or rule.subject
                route = router.route(str(key), hit.get("region"), hit.get("segment"))
                var = hit.get("value_at_risk")
                var = float(var) if var is not None else None
                prio = priority(rule.severity, var, rules.high_value_at_risk)
                title = rule.title.format(**{k: _jsonable(v) for k, v in hit.items()})
                suppressed = _suppression(cur, rule, rules, hit, nk, run_date) if rule.contact \
                    else None
                status = "suppressed" if suppressed else "open"
                tid = task_id(nk)
                cur.execute(
                    """insert into ops.improvement_tasks (task_id, natural_key, rule, subject_type,
                         subject_id, period, title, evidence, owner_team, owner_person,
                         routed_to_fallback, escalation_owner, priority, value_at_risk, due_at, status,
                         suppressed_reason, created_at, updated_at, created_run_id,
                         confirmed_run_id)
                       values (%(tid)s, %(nk)s, %(rule)s, %(st)s, %(sid)s, %(period)s, %(title)s,
                         %(ev)s, %(team)s, %(person)s, %(fb)s, %(esc)s, %(prio)s, %(var)s,
                         %(due)s, %(status)s, %(supp)s, %(as_of)s, %(as_of)s, %(run)s, %(run)s)
                       on conflict (natural_key) do update set
                         title = excluded.title, evidence = excluded.evidence,
                         owner_team = excluded.owner_team,
                         routed_to_fallback = excluded.routed_to_fallback,
                         escalation_owner = excluded.escalation_owner,
                         priority = greatest(1, excluded.priority
                           - ops.improvement_tasks.escalation_level),
                         value_at_risk = excluded.value_at_risk,
                         condition_active = true, confirmed_run_id = excluded.confirmed_run_id,
                         updated_at = case when (ops.improvement_tasks.evidence,
                             ops.improvement_tasks.condition_active)
                           is distinct from (excluded.evidence, true)
                           then excluded.updated_at else ops.improvement_tasks.updated_at end
                       returning (xmax = 0) as inserted,
                         (select evidence from ops.improvement_tasks o where o.task_id = %(tid)s)
                           as old_evidence""",
                    {"tid": tid, "nk": nk, "rule": rule.name, "st": rule.subject,
                     "sid": subject_id, "period": period, "title": title, "ev": Json(evidence),
                     "team": route.owner_team, "person": route.owner_person,
                     "fb": route.fallback, "esc": route.escalation_owner, "prio": prio, "var": var,
                     "due": as_of + timedelta(hours=rule.sla_hours), "status": status,
                     "supp": suppressed, "as_of": as_of, "run": run_id},
                )
                inserted, old_evidence = cur.fetchone()
                stats.by_rule[rule.name] = stats.by_rule.get(rule.name, 0) + 1
                stats.fallback_routed += int(route.fallback)
                if inserted:
                    stats.created += 1
                    stats.suppressed += int(bool(suppressed))
                    _event(cur, tid, run_id, "suppressed" if suppressed else "created",
                           {"owner": route.owner_person, "reason": suppressed})
                elif old_evidence != json.loads(json.dumps(evidence)):
                    stats.updated += 1
                    _event(cur, tid, run_id, "evidence_updated", {"evidence": evidence})
                else:
                    stats.unchanged += 1
            # The condition no longer holds this period: say so, never delete.
            cur.execute(
                "update ops.improvement_tasks set condition_active = false, updated_at = %s "
                "where rule = %s and period = %s and condition_active "
                "and not (natural_key = any(%s)) returning task_id",
                (as_of, rule.name, period, keys_now),
            )
            for (tid,) in cur.fetchall():
                stats.cleared += 1
                _event(cur, tid, run_id, "condition_cleared", {"as_of": run_date.isoformat()})
        stats.escalated = _escalate(cur, rules, router, as_of, run_id)
    return stats


def _suppression(cur, rule: Rule, rules: RuleSet, hit: dict[str, Any], nk: str,
                 run_date: date) -> str | None:
    """Why a customer-contact task must not reach the customer, or None."""
    if not hit.get("marketing_consent", False):
        return "no consent to contact"
    cur.execute(
        "select count(*) from ops.improvement_tasks where subject_type = 'customer' "
        "and subject_id = %s and status <> 'suppressed' and natural_key <> %s "
        "and created_at > %s",
        (str(hit["subject_id"]), nk,
         datetime.combine(run_date, time(0), tzinfo=UTC)
         - timedelta(days=rules.contact_window_days)),
    )
    if cur.fetchone()[0] >= rules.contact_cap:
        return f"contact cap: {rules.contact_cap} contacts in {rules.contact_window_days} days"
    return None


def _escalate(cur, rules: RuleSet, router: Router, as_of: datetime, run_id: str) -> int:
    """Raise overdue open tasks one level per SLA period overdue; idempotent for a given as-of."""
    sla = {r.name: r.sla_hours for r in rules.rules}
    cur.execute("select task_id, rule, due_at, escalation_level, priority from "
                "ops.improvement_tasks where status = any(%s) and due_at < %s",
                (list(OPEN_STATUSES), as_of))
    n = 0
    for tid, rule, due, level, prio in cur.fetchall():
        hours = sla.get(rule, 168)
        target = min(3, 1 + int((as_of - due).total_seconds() // (hours * 3600)))
        if target <= level:
            continue
        cur.execute("update ops.improvement_tasks set escalation_level = %s, priority = %s, "
                    "escalated_to = escalation_owner, updated_at = %s where task_id = %s",
                    (target, max(1, prio - (target - level)), as_of, tid))
        _event(cur, tid, run_id, "escalated", {"level": target, "overdue_since": due.isoformat()})
        n += 1
    return n
