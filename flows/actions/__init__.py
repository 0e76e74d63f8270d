"""Actions: turn task candidates into improvement tasks with a named owner, and keep them honest.

Each rule of ``tasks.yml`` names a dbt model of candidates (routed to an owner in
SQL from the ``owner_routing`` seed). Tasks are derived from them deterministically:
the id is a hash of the natural key (rule + subject + period), so a re-run or a
backfill finds the same task instead of making a new one. While a task for a rule
and subject is still open, the condition holding in a later period confirms that
task rather than opening a second one; a new period's task appears only after
people closed the old one. Customer tasks beyond an owner team's capacity are not
opened but wait, ranked, in ``ops.task_backlog`` (``marts.mart_task_backlog``).

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

from datetime import date, datetime, timedelta

from flows.actions.derive import (
    Cursor,
    TaskStats,
    TeamLoad,
    apply_capacity,
    candidate_dates,
    load_candidates,
    match_tracking,
    set_suppression,
    stage_candidates,
)
from flows.actions.export import EXPORT_COLUMNS, export_rows, list_tasks
from flows.actions.rules import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    SUPPRESSED,
    Capacity,
    Router,
    Rule,
    RuleSet,
    as_of_for,
    load_capacity,
    load_rules,
    period_of,
    priority,
    task_id,
)
from flows.actions.titles import title
from flows.actions.upkeep import escalate, notice_people_edits, stage_no_consent, withdrawn_consent
from flows.actions.write import change_events, clear_vanished, upsert, write_backlog
from flows.warehouse import Warehouse

__all__ = [
    "CLOSED_STATUSES", "EXPORT_COLUMNS", "OPEN_STATUSES", "SUPPRESSED", "Capacity", "Router",
    "Rule", "RuleSet", "TaskStats", "TeamLoad", "as_of_for", "candidate_selection", "derive_range",
    "derive_tasks",
    "export_rows", "list_tasks", "load_capacity", "load_rules", "period_of", "priority", "task_id", "title",
]


ANALYZE_EVERY_DAYS = 30


def candidate_selection(rules: RuleSet, only_realtime: bool = False) -> str:
    """The dbt selection that builds the rules' candidate models (with int_task_dates,
    which they are built for): ``dbt build --select <this>`` refreshes them alone."""
    names = [r.model_name for r in rules.rules if r.realtime or not only_realtime]
    return " ".join(["int_task_dates", *names])


def derive_tasks(wh: Warehouse, rules: RuleSet, router: Router | None, run_date: date,
                 run_id: str, only_realtime: bool = False, looking_back: bool = False) -> TaskStats:
    """Evaluate the rules as of ``run_date`` and write their tasks, in one transaction.

    ``router`` is accepted for callers of the earlier signature and not used: routing is
    joined in the candidate models. ``only_realtime`` evaluates only the rules marked
    ``realtime: true`` (the intra-day alerts run): it opens and confirms their tasks but
    clears and escalates nothing, since it sees part of a day. ``looking_back`` is a
    backfill's earlier date: only the rules with ``backfill: each_date`` are evaluated
    (the others' marts hold the last date only), then consent and escalation as usual.
    """
    stats = TaskStats()
    with wh.transaction() as cur:
        _lock(cur)
        _derive_date(cur, rules, run_date, run_id, stats, only_realtime, looking_back,
                     candidate_dates(cur))
    return stats


def derive_range(wh: Warehouse, rules: RuleSet, start: date, end: date, run_id: str) -> TaskStats:
    """A backfill's tasks: every date in order, as each night would have derived them.

    Dates before ``end`` evaluate the look-back rules only (``backfill: each_date``), the
    last date every rule; one transaction for the range. Counts are summed; per team the
    backlog and capacity state are the last date's.
    """
    total = TaskStats()
    with wh.transaction() as cur:
        _lock(cur)
        built = candidate_dates(cur)
        # one statement per look-back rule reads its candidates for the whole range, and
        # the customers without consent are read once
        staged = set()
        consent = start < end and stage_no_consent(cur)
        if built is not None and start < end:
            lo, hi = max(start, built[0]), min(end, built[1])
            for rule in rules.rules:
                if rule.backfill == "each_date" and lo <= hi:
                    stage_candidates(cur, rule, rules, lo, hi)
                    staged.add(rule.name)
        day = start
        while day <= end:
            if (day - start).days % ANALYZE_EVERY_DAYS == ANALYZE_EVERY_DAYS - 1:
                # The range is one transaction, so autovacuum never sees the tasks it adds:
                # without fresh statistics the planner keeps planning for the empty table a
                # first backfill starts from, and later dates slow down with every task.
                cur.execute("analyze ops.improvement_tasks")
                cur.execute("analyze ops.improvement_task_events")
            stats = TaskStats()
            # people's edits and withdrawn consent in full on the first and the last date;
            # in between only this date's new tasks can be affected (one transaction: the
            # pipeline's own writes keep seen_status, and the dimension does not change)
            full = not consent or day in (start, end)
            # between them, escalation looks at the tasks that fell due since the date
            # before; the last date looks at every task again, people's edits included
            _derive_date(cur, rules, day, run_id, stats, False, day < end, built, staged,
                         full_upkeep=full,
                         due_from=None if full else as_of_for(day - timedelta(days=1)))
            total.merge(stats)
            day += timedelta(days=1)
    return total


def _lock(cur: Cursor) -> None:
    # One deriving run at a time: a second waits instead of inserting the same task.
    cur.execute("select pg_advisory_xact_lock(hashtext('cxloop.improvement_tasks'))")


def _derive_date(cur: Cursor, rules: RuleSet, run_date: date, run_id: str, stats: TaskStats,
                 only_realtime: bool, looking_back: bool, built: tuple[date, date] | None,
                 staged: set[str] = frozenset(), full_upkeep: bool = True,
                 due_from: datetime | None = None) -> None:
    """One date: people's edits first (so a task closed today is not escalated today), then
    each rule's candidates written and vanished conditions marked, then consent re-checked,
    and overdue tasks escalated last (``due_from``: see ``escalate``)."""
    as_of = as_of_for(run_date)
    chosen = [r for r in rules.rules if (r.realtime or not only_realtime)
              and (r.backfill == "each_date" or not looking_back)]
    new_ids: list[str] = []  # the tasks this date created (the partial upkeep's scope)
    if full_upkeep:
        stats.people_edits += notice_people_edits(cur, as_of, run_id)
    for rule in chosen:
        if rule.backfill == "each_date" and not only_realtime \
                and (built is None or not built[0] <= run_date <= built[1]):
            # Not built for this date: evaluating would clear every task of the rule. (A
            # realtime-only run clears nothing; it reads the date's rows of the rule's
            # model, which the alerts run rebuilds alone for its date.)
            stats.skipped[rule.name] = (
                f"candidates built for {built[0]}..{built[1]}, not {run_date}" if built
                else "int_task_dates not built")
            continue
        n = stats.by_rule[rule.name] = load_candidates(cur, rule, rules, run_date,
                                                       rule.name in staged)
        if n:
            match_tracking(cur, rule, run_date, as_of)
            set_suppression(cur, rule, rules, as_of)
            apply_capacity(cur, rule, rules, run_date, as_of, stats)
            changed, unchanged = change_events(cur, run_date, as_of, run_id)
            created, suppressed, ids = upsert(cur, rule, run_date, as_of, run_id)
            new_ids += ids
            stats.created += created
            stats.suppressed += suppressed
            stats.updated += changed
            stats.unchanged += unchanged
            _count_teams(cur, stats)
        write_backlog(cur, rule, run_date, run_id)
        if not only_realtime:
            stats.cleared += clear_vanished(cur, rule, run_date, as_of, run_id)
    # an alerts run (only_realtime) checks the tasks it opened; the nightly run all of them
    stats.suppressed += withdrawn_consent(cur, as_of, run_id,
                                          None if full_upkeep and not only_realtime
                                          else new_ids, staged=not only_realtime)
    if not only_realtime:
        stats.escalated += escalate(cur, as_of, run_id, due_from)


def _count_teams(cur: Cursor, stats: TaskStats) -> None:
    """Add the rule's opened, backlogged and fallback-routed candidates to the run's counts."""
    cur.execute(
        """select owner_team,
                  count(*) filter (where tracked is null and reason is null and admitted),
                  count(*) filter (where tracked is null and reason is null and not admitted),
                  count(*) filter (where routed_to_fallback)
           from _cand group by owner_team order by owner_team""")
    for team, opened, backlog, fallback in cur.fetchall():
        load = stats.team(team)
        load.opened += opened
        load.backlog += backlog
        stats.backlog += backlog
        stats.fallback_routed += fallback
