"""The messages cxloop sends about tasks: an immediate alert per hot task an alerts run
opened, one escalation notice per breach, and each owner's nightly digest.

The alerts flow (``flows.alerts``) and the nightly run call these; each reads the tasks
from ``ops.improvement_tasks`` and leaves every message on record in ``ops.notifications``
through ``flows.notify`` (which keeps a crash from sending one twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from flows import actions, notify, outbound
from flows.warehouse import Warehouse

TASK_COLUMNS = ("task_id", "rule", "title", "evidence", "owner_team", "owner_person",
                "priority", "due_at", "status", "suppressed_reason", "escalated_to",
                "escalated_due_at", "subject_id")
LIST_LIMIT = 25  # lines per digest section; the rest is a count


def _tasks(wh: Warehouse, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_iter_tasks(wh, where, params))


def _iter_tasks(wh: Warehouse, where: str, params: dict[str, Any],
                batch_rows: int = 10_000) -> Iterator[dict[str, Any]]:
    """The tasks matching ``where``, most urgent first, read through a server-side cursor:
    a nightly digest walks every open task (443k after a 1M-customer backfill), and
    holding them all as dicts cost more memory than the rest of the run."""
    with wh.transaction() as cur:
        named = cur.connection.cursor(name="cxloop_tasks")
        named.itersize = batch_rows
        named.execute(f"select {', '.join(TASK_COLUMNS)} from ops.improvement_tasks t "
                      f"where {where} order by priority, due_at, task_id", params)
        cols = None
        for r in named:
            cols = cols or [d.name for d in named.description]
            yield dict(zip(cols, r, strict=True))
        named.close()


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


@dataclass
class _Section:
    """One section of an owner's digest: how many tasks, the first LIST_LIMIT of them (the
    lines it shows) and the items it carries (what the owner has now been told)."""

    count: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)

    def add(self, t: dict[str, Any], item: str) -> None:
        self.count += 1
        if len(self.listed) < LIST_LIMIT:
            self.listed.append(t)
        self.items.append(item)


def _section(title: str, sec: _Section) -> list[str]:
    if not sec.count:
        return []
    lines = [f"{title} ({sec.count}):"]
    lines += [f"- {t['task_id']} P{t['priority']} due {t['due_at']:%Y-%m-%d}: {t['title']}"
              for t in sec.listed]
    if sec.count > LIST_LIMIT:
        lines.append(f"- ... and {sec.count - LIST_LIMIT} more (cxloop tasks list --owner ...)")
    return lines + [""]


def _closed_section(sec: _Section) -> list[str]:
    if not sec.count:
        return []
    lines = [f"Closed with effect ({sec.count}):"]
    lines += [f"- {t['task_id']} closed {t['closed_at']:%Y-%m-%d}: {t['title']} -- "
              f"{outbound.effect_text(t)}" for t in sec.listed]
    if sec.count > LIST_LIMIT:
        lines.append(f"- ... and {sec.count - LIST_LIMIT} more (marts.mart_task_effects)")
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
    open_tasks = _iter_tasks(wh, "status = any(%(open)s) and created_at <= %(as_of)s",
                             {"open": list(actions.OPEN_STATUSES), "as_of": as_of})
    digests: dict[str, dict[str, _Section]] = {}
    contacts_of: dict[str, list[notify.Contact]] = {}

    def add(owners: tuple[str | None, ...], section: str, t: dict[str, Any], item: str) -> None:
        for owner, contacts in _by_owner(n.contacts, *owners):
            if section != "overdue" and (owner, item) in told:
                continue
            contacts_of[owner] = contacts
            d = digests.setdefault(owner, {k: _Section() for k in
                                           ("new", "escalated", "overdue", "closed")})
            d[section].add(t, item)

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
        if not any(sec.count for sec in d.values()):
            continue
        body = "\n".join([f"cxloop digest for {owner}, {run_date}", ""]
                         + _section("New", d["new"]) + _section("Escalated", d["escalated"])
                         + _section("Overdue", d["overdue"]) + _closed_section(d["closed"]))
        items = sorted({i for s in ("new", "escalated", "closed") for i in d[s].items})
        n.send(notify.Message(f"digest|{run_date}", "digest", owner,
                              f"[cxloop] {d['new'].count} new, {d['escalated'].count} escalated, "
                              f"{d['overdue'].count} overdue"
                              + (f", {d['closed'].count} closed" if d["closed"].count else ""),
                              body, items), contacts_of[owner])
        sent += 1
    return sent
