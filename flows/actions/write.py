"""Writing one rule's tasks: change events, the upsert, the backlog and cleared conditions.

Each function is one or two set-based statements over the ``_cand`` table that
``derive.load_candidates`` filled and the matching, suppression and capacity steps
annotated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg2.extensions

from flows.actions.rules import SUPPRESSED, Rule

Cursor = psycopg2.extensions.cursor

# Pipeline-owned fields that make a confirmed task "changed" (and get an event).
_CHANGED = ("(t.evidence, t.title, t.owner_team, t.owner_person, t.base_priority, t.condition_active) "
            "is distinct from (excluded.evidence, excluded.title, excluded.owner_team, "
            "excluded.owner_person, excluded.base_priority, true)")


def change_events(cur: Cursor, run_date: date, as_of: datetime, run_id: str) -> tuple[int, int]:
    """Log what changed on the tasks the candidates confirm; returns (changed, unchanged)."""
    cur.execute(
        """alter table _cand add column changed boolean not null default false,
                             add column fresh boolean not null default false""")
    cur.execute(
        """update _cand c set
               changed = (t.evidence, t.title, t.owner_team, t.owner_person, t.base_priority,
                          t.condition_active)
                         is distinct from (c.evidence, c.title, c.owner_team, c.owner_person,
                                           c.base, true),
               fresh = coalesce(t.last_confirmed_on >= %(d)s, false)
           from ops.improvement_tasks t where t.task_id = c.tracked and not c.skip""",
        {"d": run_date})
    cur.execute(
        """insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
           select t.task_id, %(run)s, e.event, e.detail, %(as_of)s
           from _cand c
           join ops.improvement_tasks t on t.task_id = c.tracked
           cross join lateral (values
             (1, 'evidence_updated', jsonb_build_object('evidence', c.evidence),
              t.evidence is distinct from c.evidence or t.title is distinct from c.title),
             (2, 'rerouted', jsonb_build_object('from', t.owner_person, 'to', c.owner_person,
                                                'owner_team', c.owner_team,
                                                'fallback', c.routed_to_fallback),
              (t.owner_team, t.owner_person) is distinct from (c.owner_team, c.owner_person)),
             (3, 'reprioritised', jsonb_build_object('from', t.base_priority, 'to', c.base),
              t.base_priority is distinct from c.base),
             (4, 'condition_returned', jsonb_build_object('as_of', %(d)s::text),
              not t.condition_active)
           ) as e (ordinal, event, detail, happened)
           where c.changed and e.happened
           order by t.task_id, e.ordinal""",
        {"run": run_id, "as_of": as_of, "d": run_date})
    cur.execute("select count(*) filter (where changed), count(*) filter (where not changed) "
                "from _cand where tracked is not null")
    changed, unchanged = cur.fetchone()
    return changed, unchanged


def upsert(cur: Cursor, rule: Rule, run_date: date, as_of: datetime, run_id: str
           ) -> tuple[int, int, list[str]]:
    """One ``insert ... on conflict (task_id) do update`` for the rule; (created,
    suppressed, the ids of the tasks created).

    New candidates (opened, or suppressed with their reason) are inserted; the tasks
    candidates confirm get the pipeline-owned fields only (status, assignee and notes
    are never written), and not when a later date already evaluated them (a backfill
    re-run in order must not roll evidence back). ``task_id`` is the hash of the natural
    key, so a re-run finds the same row.
    """
    cur.execute(
        f"""with up as (
              insert into ops.improvement_tasks as t (task_id, natural_key, rule, subject_type,
                  subject_id, period, title, evidence, owner_team, owner_person,
                  routed_to_fallback, escalation_owner, priority, base_priority, value_at_risk,
                  due_at, status, seen_status, suppressed_reason, is_contact, created_at,
                  updated_at, created_run_id, confirmed_run_id, last_confirmed_on,
                  condition_checked_on)
              select coalesce(c.tracked, c.task_id), coalesce(c.tracked_nk, c.nk), %(rule)s,
                  %(subject)s, c.subject_id, c.period, c.title, c.evidence, c.owner_team,
                  c.owner_person, c.routed_to_fallback, c.escalation_owner, c.base, c.base,
                  c.value_at_risk, %(due)s,
                  case when c.reason is null then 'open' else %(supp)s end,
                  case when c.reason is null then 'open' else %(supp)s end,
                  c.reason, %(contact)s, %(as_of)s, %(as_of)s, %(run)s, %(run)s, %(d)s, %(d)s
              from _cand c
              where (c.tracked is null and (c.reason is not null or c.admitted))
                 or (c.tracked is not null and not c.skip and (c.changed or not c.fresh))
              order by c.subject_id
              on conflict (task_id) do update set
                  title = excluded.title, evidence = excluded.evidence,
                  owner_team = excluded.owner_team, owner_person = excluded.owner_person,
                  routed_to_fallback = excluded.routed_to_fallback,
                  escalation_owner = excluded.escalation_owner,
                  base_priority = excluded.base_priority,
                  priority = greatest(1, excluded.base_priority - t.escalation_level),
                  value_at_risk = excluded.value_at_risk, condition_active = true,
                  last_confirmed_on = greatest(t.last_confirmed_on, excluded.last_confirmed_on),
                  condition_checked_on = greatest(t.condition_checked_on,
                                                  excluded.condition_checked_on),
                  confirmed_run_id = case when {_CHANGED} then excluded.confirmed_run_id
                                          else t.confirmed_run_id end,
                  updated_at = case when {_CHANGED} then excluded.updated_at else t.updated_at end
              where t.condition_checked_on is null
                 or t.condition_checked_on <= excluded.condition_checked_on
              returning t.task_id, (xmax = 0) as inserted, t.status, t.owner_team,
                  t.owner_person, t.routed_to_fallback, t.base_priority, t.suppressed_reason,
                  t.due_at
            )
            insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
            select task_id, %(run)s, case when status = %(supp)s then %(supp)s else 'created' end,
                   jsonb_build_object('owner_team', owner_team, 'owner', owner_person,
                                      'fallback', routed_to_fallback, 'priority', base_priority,
                                      'reason', suppressed_reason, 'due_at', due_at),
                   %(as_of)s
            from up where inserted order by task_id
            returning task_id, event""",
        {"rule": rule.name, "subject": rule.subject, "due": as_of + timedelta(hours=rule.sla_hours),
         "supp": SUPPRESSED, "contact": rule.contact, "as_of": as_of, "run": run_id,
         "d": run_date})
    rows = cur.fetchall()
    events = [e for _, e in rows]
    return len(events), events.count(SUPPRESSED), [t for t, _ in rows]


def write_backlog(cur: Cursor, rule: Rule, run_date: date, run_id: str) -> None:
    """Replace the rule's backlog with this date's (unless a later date already wrote one)."""
    if rule.subject != "customer":
        return  # only customer tasks wait for capacity
    cur.execute(
        """delete from ops.task_backlog where rule = %(rule)s and as_of_date <= %(d)s""",
        {"rule": rule.name, "d": run_date})
    cur.execute(
        """insert into ops.task_backlog (as_of_date, rule, rule_class, subject_type, subject_id,
               period, owner_team, owner_person, backlog_rank, priority_score, priority_reason,
               value_at_risk, title, run_id)
           select %(d)s, %(rule)s, %(cls)s, %(subject)s, c.subject_id, c.period, c.owner_team,
                  c.owner_person, c.backlog_rank, c.priority_score, c.priority_reason,
                  c.value_at_risk, c.title, %(run)s
           from _cand c
           where c.tracked is null and c.reason is null and not c.admitted
             and not exists (select 1 from ops.task_backlog b
                             where b.rule = %(rule)s and b.as_of_date > %(d)s)""",
        {"d": run_date, "rule": rule.name, "cls": rule.capacity_class, "subject": rule.subject,
         "run": run_id})


def clear_vanished(cur: Cursor, rule: Rule, run_date: date, as_of: datetime, run_id: str) -> int:
    """Mark the rule's tasks whose condition no longer holds; never delete them.

    Only tasks that existed as of this run and that no later date has evaluated are
    touched, so re-deriving an earlier date neither clears what later dates created or
    confirmed nor makes events.
    """
    cur.execute(
        """with cleared as (
             update ops.improvement_tasks set condition_active = false, updated_at = %(as_of)s,
                    condition_checked_on = %(d)s
             where rule = %(rule)s and condition_active and created_at <= %(as_of)s
               and (condition_checked_on is null or condition_checked_on <= %(d)s)
               and task_id not in (select coalesce(tracked, task_id) from _cand
                                   where tracked is not null or reason is not null or admitted)
             returning task_id
           )
           insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
           select task_id, %(run)s, 'condition_cleared',
                  jsonb_build_object('as_of', %(as_of)s::timestamptz), %(as_of)s
           from cleared order by task_id
           returning task_id""",
        {"as_of": as_of, "d": run_date, "rule": rule.name, "run": run_id})
    return len(cur.fetchall())
