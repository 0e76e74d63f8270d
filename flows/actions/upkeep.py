"""What every deriving run does besides the rules: people's edits, consent, escalation.

Each is one statement that changes the tasks and writes their events together.
"""

from __future__ import annotations

from datetime import datetime

import psycopg2.extensions

from flows.actions.rules import CLOSED_STATUSES, OPEN_STATUSES, SUPPRESSED

Cursor = psycopg2.extensions.cursor


def notice_people_edits(cur: Cursor, as_of: datetime, run_id: str) -> int:
    """Log status and assignee changes people made since the last run, and stamp closures.

    People edit the table directly (or through the ticketing tool's sync); the
    pipeline compares with what it last saw so that every change lands in the event
    log and a closure gets ``closed_at`` for the effect mart.
    """
    # Tasks from before these columns existed: start tracking from what they hold now.
    cur.execute("update ops.improvement_tasks set seen_status = status, seen_assignee = assignee "
                "where seen_status is null")
    cur.execute(
        """with edited as (
             select task_id, seen_status, status, seen_assignee, assignee
             from ops.improvement_tasks
             where status is distinct from seen_status or assignee is distinct from seen_assignee
             order by task_id
             for update
           ), logged as (
             insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
             select task_id, %(run)s, e.event, e.detail, %(as_of)s
             from edited
             cross join lateral (values
               (1, 'status_changed', jsonb_build_object('from', seen_status, 'to', status,
                                                        'by', 'people'),
                status is distinct from seen_status),
               (2, 'assignee_changed', jsonb_build_object('from', seen_assignee, 'to', assignee,
                                                          'by', 'people'),
                assignee is distinct from seen_assignee)
             ) as e (ordinal, event, detail, happened)
             where e.happened
             order by task_id, e.ordinal
           ), seen as (
             update ops.improvement_tasks t
             set seen_status = t.status, seen_assignee = t.assignee,
                 closed_at = case when t.status = any(%(closed)s)
                                  then coalesce(t.closed_at, %(as_of)s) end
             from edited where t.task_id = edited.task_id
           )
           select count(*) from edited""",
        {"run": run_id, "as_of": as_of, "closed": list(CLOSED_STATUSES)})
    return cur.fetchone()[0]


NO_CONSENT = "_no_consent"


def stage_no_consent(cur: Cursor) -> bool:
    """The current customers without consent, once for a backfill's range (the customer
    dimension does not change while it derives), indexed for ``withdrawn_consent``'s
    per-date look-ups; False when there is no customer dimension."""
    cur.execute("select to_regclass('marts.dim_customers') is not null")
    if not cur.fetchone()[0]:
        return False
    cur.execute(f"""create temp table {NO_CONSENT} on commit drop as
                    select distinct customer_id from marts.dim_customers
                    where is_current and not coalesce(marketing_consent, false)""")
    cur.execute(f"create index on {NO_CONSENT} (customer_id)")
    cur.execute(f"analyze {NO_CONSENT}")
    return True


def withdrawn_consent(cur: Cursor, as_of: datetime, run_id: str,
                      created: list[str] | None = None, staged: bool = True) -> int:
    """Suppress still-open contact tasks of customers who no longer consent.

    Consent is checked when a task is created; a customer who withdraws it later must
    not be called on an old task either. This is the one status the pipeline
    overrides after people may have touched it, and the event records what it was.
    ``created`` (a backfill's dates after its first, with ``stage_no_consent``): only
    these tasks, the ones the date created, are checked, against the staged customers;
    the earlier ones were checked on their own date against the same dimension.
    ``staged=False`` (the alerts run): the created tasks against the dimension itself; the
    older ones are the nightly run's, as the dimension does not change during the day.
    """
    if created is not None and not created:
        return 0
    if created is not None and staged:
        who = (f"{NO_CONSENT} c where c.customer_id = t.subject_id "
               "and t.task_id = any(%(created)s)")
    else:
        cur.execute("select to_regclass('marts.dim_customers') is not null")
        if not cur.fetchone()[0]:
            return 0
        who = ("marts.dim_customers c where c.customer_id = t.subject_id and c.is_current "
               "and not coalesce(c.marketing_consent, false)")
        if created is not None:
            who += " and t.task_id = any(%(created)s)"
    cur.execute(
        f"""with suppressed as (
             update ops.improvement_tasks t
             set status = %(supp)s, seen_status = %(supp)s, updated_at = %(as_of)s,
                 suppressed_reason = 'consent withdrawn after the task was created'
             from {who}
               and t.is_contact and t.status = any(%(open)s)
             returning t.task_id, t.owner_person
           )
           insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
           select task_id, %(run)s, %(supp)s,
                  jsonb_build_object('reason', 'consent withdrawn after the task was created',
                                     'owner', owner_person), %(as_of)s
           from suppressed order by task_id
           returning task_id""",
        {"supp": SUPPRESSED, "as_of": as_of, "open": list(OPEN_STATUSES), "run": run_id,
         "created": created})
    return len(cur.fetchall())


def escalate(cur: Cursor, as_of: datetime, run_id: str,
             due_from: datetime | None = None) -> int:
    """Escalate each overdue open task once per breach; a re-run finds nothing to do.

    A breach is one due date passing: ``escalated_due_at`` remembers the due date
    already escalated, so re-running the same or a later date does not escalate again,
    while a task whose due date is moved and missed again escalates again.

    ``due_from``: only tasks due at or after it. A backfill's dates between its first
    and last pass the previous date's as-of: in the range's one transaction that date
    escalated every task due before it, and the pipeline sets due dates only ahead of
    its as-of; the last date looks at every task again. The range's updates leave their
    old row versions in the index until it commits, and without the bound each date
    walked those of every earlier date.
    """
    since = "and due_at >= %(since)s" if due_from is not None else ""
    cur.execute(
        f"""with escalated as (
             update ops.improvement_tasks
             set escalation_level = escalation_level + 1,
                 priority = greatest(1, coalesce(base_priority, priority) - escalation_level - 1),
                 escalated_to = coalesce(escalation_owner, owner_person),
                 escalated_due_at = due_at, updated_at = %(as_of)s
             where status = any(%(open)s) and due_at < %(as_of)s {since}
               and escalated_due_at is distinct from due_at
             returning task_id, escalation_level, priority, escalated_to, due_at
           )
           insert into ops.improvement_task_events (task_id, run_id, event, detail, as_of)
           select task_id, %(run)s, 'escalated',
                  jsonb_build_object('level', escalation_level, 'priority', priority,
                                     'escalated_to', escalated_to, 'overdue_since', due_at),
                  %(as_of)s
           from escalated order by task_id
           returning task_id""",
        {"as_of": as_of, "open": list(OPEN_STATUSES), "run": run_id, "since": due_from})
    return len(cur.fetchall())
