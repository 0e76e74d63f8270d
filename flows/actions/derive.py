"""Deriving tasks: one rule's candidates of one date become tasks in set-based statements.

Per rule and date: the candidates are copied from the rule's dbt model into a
temporary table; each is matched to the task already tracking its rule and subject
(same natural key; else a still-open task of an earlier period; else a suppressed one
whose condition never cleared; else one people closed this period); new customer
contacts are checked for consent and the contact cap; new customer tasks beyond
their owner team's capacity are ranked into the backlog instead of opened; then one
``insert ... on conflict (task_id) do update`` writes the rule's tasks (people-owned
columns are never in its update list), and one statement marks the rule's vanished
conditions as cleared. Every change is an event in ``ops.improvement_task_events``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from flows.actions.rules import (
    CANDIDATE_SCHEMA,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    SUPPRESSED,
    Rule,
    RuleSet,
    period_of,
)
from flows.actions.titles import jsonable, title
from flows.errors import StageError

log = logging.getLogger(__name__)
Cursor = psycopg2.extensions.cursor
TRUNC = {"day": "day", "week": "week", "month": "month"}


@dataclass
class TeamLoad:
    """One owner team in a run: tasks opened, whether a capacity was reached, backlog size."""

    opened: int = 0
    at_capacity: bool = False
    backlog: int = 0


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
    backlog: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    teams: dict[str, TeamLoad] = field(default_factory=dict)
    # Rules not evaluated on a date, with why (a look-back model not built for it).
    skipped: dict[str, str] = field(default_factory=dict)

    def merge(self, later: TaskStats) -> None:
        """Add a later date's counts; the backlog and capacity state are the later date's."""
        for name in ("created", "updated", "unchanged", "cleared", "escalated", "suppressed",
                     "fallback_routed", "people_edits"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        self.backlog = later.backlog
        for rule, n in later.by_rule.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + n
        for name, load in later.teams.items():
            mine = self.team(name)
            mine.opened += load.opened
            mine.at_capacity, mine.backlog = load.at_capacity, load.backlog
        self.skipped.update(later.skipped)

    def team(self, name: str) -> TeamLoad:
        return self.teams.setdefault(name, TeamLoad())

    def team_lines(self) -> list[str]:
        """Per team: opened, at capacity, backlog size (the run summary)."""
        return [f"{name}: {t.opened} opened" + (", at capacity" if t.at_capacity else "")
                + (f", backlog {t.backlog}" if t.backlog else "")
                for name, t in sorted(self.teams.items())]


def _relation(rule: Rule) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(CANDIDATE_SCHEMA), sql.Identifier(rule.model_name))


def candidate_dates(cur: Cursor) -> tuple[date, date] | None:
    """The dates the look-back models were built for (int_task_dates), or None."""
    cur.execute("select to_regclass(%s) is not null", (f"{CANDIDATE_SCHEMA}.int_task_dates",))
    if not cur.fetchone()[0]:
        return None
    cur.execute(sql.SQL("select min(as_of_date), max(as_of_date) from {}.int_task_dates")
                .format(sql.Identifier(CANDIDATE_SCHEMA)))
    first, last = cur.fetchone()
    return (first, last) if first else None


_CANDIDATE_COLUMNS = """subject_id, coalesce(m.period, p.period) as period, owner_team, owner_person,
    escalation_owner, routed_to_fallback, coalesce(marketing_consent, false) as consent,
    value_at_risk, coalesce(priority_score, 0) as priority_score, priority_reason, evidence,
    region, segment"""
_KEYED = """select c.*, %(rule)s || '|' || c.subject_id || '|' || c.period as nk,
    'T' || left(encode(sha256(convert_to(%(rule)s || '|' || c.subject_id || '|' || c.period,
                                         'UTF8')), 'hex'), 15) as task_id,
    greatest(1, %(base)s - case when c.value_at_risk >= %(high)s then 1 else 0 end) as base,
    null::text as title, null::text as tracked, null::text as tracked_nk, false as skip,
    null::text as reason, true as admitted, null::int as backlog_rank"""


def staged_table(rule: Rule) -> str:
    """The temporary table of a rule's staged candidates (rule names are identifiers)."""
    return f"_staged_{rule.name}"[:63]


def _check_model(cur: Cursor, rule: Rule) -> None:
    cur.execute("select to_regclass(%s) is not null", (f"{CANDIDATE_SCHEMA}.{rule.model_name}",))
    if not cur.fetchone()[0]:
        raise StageError(
            f"tasks.yml rule {rule.name!r}: its model {CANDIDATE_SCHEMA}.{rule.model_name} is "
            f"not in the warehouse; add dbt_project/models/intermediate/actions/"
            f"{rule.model_name}.sql (columns as in _task_candidates__models.yml) and re-run")


def _reading_failed(rule: Rule, e: psycopg2.Error) -> StageError:
    return StageError(f"tasks.yml rule {rule.name!r}: reading {CANDIDATE_SCHEMA}."
                      f"{rule.model_name} failed: {(e.diag.message_primary or str(e)).strip()}; "
                      "its columns must be those of _task_candidates__models.yml")


# Candidates whose titles are rendered at a time: a backfill's look-back rule stages every
# date's candidates at once (a million detractor call-backs for a year of a million
# customers), and reading them all into Python at once took 2.4 GB.
TITLE_CHUNK = 20_000


def _set_titles(cur: Cursor, rule: Rule, table: str, by_date: bool) -> int:
    """Render the rule's titles (Python str.format over the evidence) into ``table``.

    The rows are read through a server-side cursor ``TITLE_CHUNK`` at a time and their
    titles collected in a temporary table, then written in one update: memory follows
    the chunk, not the number of candidates."""
    day = "as_of_date" if by_date else "null::date"
    cur.execute("drop table if exists _titles")
    cur.execute("create temp table _titles (d date, subject_id text, title text) "
                "on commit drop")
    n = 0
    with cur.connection.cursor(name="cxloop_titles") as src:
        src.itersize = TITLE_CHUNK
        src.execute(f"select {day}, subject_id, period, region, segment, value_at_risk, "
                    f"evidence from {table}")
        while rows := src.fetchmany(TITLE_CHUNK):
            titles = [title(rule, {**(ev or {}), "subject_id": sid, "period": per,
                                   "region": reg, "segment": seg,
                                   "value_at_risk": jsonable(var)})
                      for _, sid, per, reg, seg, var, ev in rows]
            cur.execute("insert into _titles select * from "
                        "unnest(%(days)s::date[], %(ids)s::text[], %(titles)s::text[])",
                        {"days": [r[0] for r in rows], "ids": [r[1] for r in rows],
                         "titles": titles})
            n += len(rows)
    if n:
        match = "t.d = c.as_of_date and " if by_date else ""
        cur.execute(f"update {table} c set title = t.title from _titles t "
                    f"where {match}t.subject_id = c.subject_id")
    cur.execute("drop table _titles")
    return n


def stage_candidates(cur: Cursor, rule: Rule, rules: RuleSet, start: date, end: date) -> int:
    """A look-back rule's candidates for every date of a backfill, in one statement.

    The rows, keys and titles of the whole range go into one temporary table indexed by
    date (``staged_table``), so each date then reads its candidates from there instead
    of scanning the model and rendering titles again (the model holds every date, so a
    per-date scan grew with the square of the range). Returns the rows staged.
    """
    _check_model(cur, rule)
    staged = staged_table(rule)
    days, periods = [], []
    d = start
    while d <= end:
        days.append(d)
        periods.append(period_of(d, rule.period))
        d += timedelta(days=1)
    cur.execute(f"drop table if exists {staged}")
    try:
        cur.execute(sql.SQL(
            f"""create temp table {staged} on commit drop as
               {_KEYED}
               from (
                 select distinct on (m.as_of_date, subject_id) m.as_of_date, {_CANDIDATE_COLUMNS}
                 from {{rel}} m
                 join unnest(%(days)s::date[], %(periods)s::text[]) as p (d, period)
                   on p.d = m.as_of_date
                 where subject_id is not null
                 order by m.as_of_date, subject_id, priority_score desc nulls last
               ) c""").format(
            rel=_relation(rule)),
            {"days": days, "periods": periods, "rule": rule.name, "base": 4 - rule.severity,
             "high": rules.high_value_at_risk})
    except psycopg2.Error as e:
        raise _reading_failed(rule, e) from None
    n = _set_titles(cur, rule, staged, by_date=True)
    cur.execute(f"create index on {staged} (as_of_date)")
    cur.execute(f"analyze {staged}")
    return n


def load_candidates(cur: Cursor, rule: Rule, rules: RuleSet, run_date: date,
                    staged: bool = False) -> int:
    """Copy the rule's candidates of ``run_date`` into ``_cand`` with their natural key, id,
    base priority and title; returns the count.

    A rule that does not look back holds its model's latest rows whatever the date (its
    marts are as of the build's run date); a look-back rule holds that date's rows.
    ``staged``: read them from the range's staged table (``stage_candidates``).
    """
    cur.execute("drop table if exists _cand")
    if staged:
        cur.execute(f"""create temp table _cand on commit drop as
                        select * from {staged_table(rule)} where as_of_date = %(d)s""",
                    {"d": run_date})
        cur.execute("alter table _cand drop column as_of_date")
        cur.execute("select count(*) from _cand")
        return cur.fetchone()[0]
    _check_model(cur, rule)
    rel = _relation(rule)
    when = (sql.SQL("as_of_date = %(d)s") if rule.backfill == "each_date"
            else sql.SQL("as_of_date = (select max(as_of_date) from {})").format(rel))
    try:
        cur.execute(sql.SQL(
            f"""create temp table _cand on commit drop as
               {_KEYED}
               from (
                 select distinct on (subject_id) {_CANDIDATE_COLUMNS}
                 from {{rel}} m cross join (select %(period)s::text as period) p
                 where {{when}} and subject_id is not null
                 order by subject_id, priority_score desc nulls last
               ) c""").format(rel=rel, when=when),
            {"period": period_of(run_date, rule.period), "d": run_date, "rule": rule.name,
             "base": 4 - rule.severity, "high": rules.high_value_at_risk})
    except psycopg2.Error as e:
        raise _reading_failed(rule, e) from None
    return _set_titles(cur, rule, "_cand", by_date=False)


def match_tracking(cur: Cursor, rule: Rule, run_date: date, as_of: datetime) -> None:
    """Set ``tracked`` to the task already tracking each candidate's rule and subject.

    A task closed in an earlier period does not count: the condition still holding a
    period later is a new task. One closed during the current period does (the fix needs
    time to show in the data, so the same condition is not raised again the day it was
    closed); ``closed_at`` is on the as-of timeline, midnight after the closing date.
    """
    trunc = TRUNC[rule.period]
    cur.execute(
        sql.SQL("""update _cand c set tracked = m.task_id, tracked_nk = m.natural_key,
                 skip = m.condition_checked_on is not null and m.condition_checked_on > %(d)s
               from (
                 select distinct on (c2.subject_id) c2.subject_id, t.task_id, t.natural_key,
                        t.condition_checked_on
                 from _cand c2
                 join ops.improvement_tasks t on t.rule = %(rule)s and t.subject_id = c2.subject_id
                 where t.natural_key = c2.nk or t.status = any(%(open)s)
                    or (t.status = %(supp)s and t.condition_active)
                    or (t.status = any(%(closed)s)
                        and date_trunc({p}, (coalesce(t.closed_at, %(as_of)s) at time zone 'UTC')
                                             - interval '1 day')
                            = date_trunc({p}, %(d)s::timestamp))
                 order by c2.subject_id,
                          case when t.natural_key = c2.nk then 1
                               when t.status = any(%(open)s) then 2
                               when t.status = %(supp)s and t.condition_active then 3
                               else 4 end,
                          t.created_at desc, t.task_id
               ) m where m.subject_id = c.subject_id""").format(p=sql.Literal(trunc)),
        {"rule": rule.name, "d": run_date, "as_of": as_of, "open": list(OPEN_STATUSES),
         "supp": SUPPRESSED, "closed": list(CLOSED_STATUSES)})


def set_suppression(cur: Cursor, rule: Rule, rules: RuleSet, as_of: datetime) -> None:
    """For a new contact, why it must not reach the customer (None: it may).

    Consent comes from the model (missing means no); the cap counts the customer's contact
    tasks that were not suppressed, created in the rolling window ending at the run's
    as-of time (so a backfill counts the contacts its earlier dates made, none from later).
    """
    if not rule.contact:
        return
    cur.execute(
        """update _cand c set reason = case
               when not c.consent then 'no consent to contact'
               else 'contact cap: already ' || n.n || ' contact task(s) in ' || %(days)s
                    || ' days (cap ' || %(cap)s || ')' end
           from (
             select c2.subject_id, (
               select count(*) from ops.improvement_tasks b
               where b.is_contact and b.subject_id = c2.subject_id and b.status <> %(supp)s
                 and b.task_id <> c2.task_id and b.created_at > %(since)s
                 and b.created_at <= %(as_of)s) as n
             from _cand c2 where c2.tracked is null
           ) n
           where n.subject_id = c.subject_id and (not c.consent or n.n >= %(cap)s)""",
        {"days": rules.contact_window_days, "cap": rules.contact_cap, "supp": SUPPRESSED,
         "since": as_of - timedelta(days=rules.contact_window_days), "as_of": as_of})


def apply_capacity(cur: Cursor, rule: Rule, rules: RuleSet, run_date: date, as_of: datetime,
                   stats: TaskStats) -> None:
    """Admit new customer tasks up to each owner team's remaining capacity, best first.

    Capacity (``owner_capacity``: owner team x rule class x day or week) counts the team's
    tasks of the class that are open, or were opened in the current period whatever their
    status now; so neither the tasks opened per period nor the open ones exceed it. The
    rest wait, ranked by priority_score, in ``ops.task_backlog``. Touchpoint and segment
    tasks have no capacity and customer tasks never count against them.
    """
    if rule.subject != "customer":
        return
    cur.execute("select to_regclass('staging.owner_capacity') is not null")
    if not cur.fetchone()[0]:
        return
    same_class = [r.name for r in rules.rules if r.subject == "customer"
                  and r.capacity_class == rule.capacity_class]
    cur.execute(
        """with teams as (
             select owner_team, count(*) as wanted from _cand
             where tracked is null and reason is null group by owner_team
           ), caps as (
             select distinct on (teams.owner_team) teams.owner_team, teams.wanted,
                    cap.capacity, cap.period
             from teams join staging.owner_capacity cap
               on cap.rule_class = %(cls)s and cap.owner_team in (teams.owner_team, '*')
             order by teams.owner_team, cap.owner_team = '*'
           )
           select caps.owner_team, caps.wanted, caps.capacity, (
             select count(*) from ops.improvement_tasks t
             where t.owner_team = caps.owner_team and t.rule = any(%(rules)s)
               and t.status <> %(supp)s and t.created_at <= %(as_of)s
               and (t.status = any(%(open)s)
                    or date_trunc(caps.period, (t.created_at at time zone 'UTC') - interval '1 day')
                       = date_trunc(caps.period, %(d)s::timestamp))) as used
           from caps""",
        {"cls": rule.capacity_class, "rules": same_class, "supp": SUPPRESSED, "as_of": as_of,
         "open": list(OPEN_STATUSES), "d": run_date})
    limits = cur.fetchall()
    for team, wanted, capacity, used in limits:
        free = max(capacity - used, 0)
        stats.team(team).at_capacity |= used + min(wanted, free) >= capacity
    if not limits:
        return
    cur.execute(
        """update _cand c set admitted = r.n <= l.free,
               backlog_rank = case when r.n > l.free then cast(r.n - l.free as int) end
           from (select subject_id, row_number() over (partition by owner_team
                        order by priority_score desc, subject_id) as n
                 from _cand where tracked is null and reason is null) r,
                unnest(%(teams)s::text[], %(free)s::int[]) as l (owner_team, free)
           where r.subject_id = c.subject_id and l.owner_team = c.owner_team""",
        {"teams": [t for t, *_ in limits], "free": [max(c - u, 0) for _, _, c, u in limits]})
