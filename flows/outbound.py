"""Closing the loop: a recovery-survey invitation when a customer-facing task is resolved.

The survey tool imports ``<outbound>/survey/invitations/<date>/invitations.csv`` (columns
in ``INVITATION_COLUMNS``, README "Closing the loop"). The invitation carries the
customer's id only; the survey tool holds the address. Consent and the contact cap of
``tasks.yml`` apply, the invitation counting as a contact. Each resolved task is
considered once (``ops.recovery_invitations``, keyed by task): invited, or not with the
reason, so no customer is invited twice for one task whatever the re-runs; the day's file
is rewritten from that table, so a re-run writes the same file.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flows import actions
from flows.config import Settings
from flows.warehouse import Warehouse

INVITATION_COLUMNS = ("invitation_id", "customer_id", "survey_type", "touchpoint_code",
                      "invite_date", "reason", "task_id")
RESOLVED = ("done", "resolved")


@dataclass
class InvitationStats:
    invited: int = 0
    not_invited: int = 0
    file: str | None = None

    def lines(self) -> list[str]:
        if not self.not_invited:
            return []
        return [f"recovery surveys: {self.not_invited} resolved task(s) not invited (no consent "
                "or contact cap; see ops.recovery_invitations.reason)"]


def outbound_dir(settings: Settings) -> Path:
    return Path(settings.alerts.outbound or Path(settings.home).resolve() / "outbound")


def write_recovery_invitations(wh: Warehouse, settings: Settings, run_date: date,
                               run_id: str) -> InvitationStats:
    """Invite the customers of newly resolved contact tasks; write the day's import file."""
    rules = actions.load_rules(settings.tasks)
    as_of = actions.as_of_for(run_date)
    window_from = as_of - timedelta(days=rules.contact_window_days)
    stats = InvitationStats()
    with wh.transaction() as cur:
        cur.execute("select to_regclass('marts.dim_customers') is not null")
        has_dim = cur.fetchone()[0]
        consent = ("(select coalesce(bool_or(c.marketing_consent), false) from marts.dim_customers c "
                   "where c.customer_id = t.subject_id and c.is_current)" if has_dim
                   else "coalesce((t.evidence->>'marketing_consent')::boolean, false)")
        cur.execute(
            f"""select t.task_id, t.subject_id,
                       coalesce(t.evidence->>'touchpoint_code', t.evidence->>'touchpoint'),
                       {consent} as consent,
                       (select count(*) from ops.improvement_tasks o
                        where o.is_contact and o.subject_id = t.subject_id
                          and o.status <> %(supp)s
                          and o.created_at > %(from)s and o.created_at <= %(as_of)s)
                       + (select count(*) from ops.recovery_invitations i
                          where i.customer_id = t.subject_id and i.status = 'invited'
                            and i.invite_date > %(from_date)s) as contacts
                from ops.improvement_tasks t
                where t.is_contact and t.subject_type = 'customer'
                  and t.status = any(%(resolved)s)
                  and not exists (select 1 from ops.recovery_invitations r
                                  where r.task_id = t.task_id)
                order by t.task_id""",
            {"supp": actions.SUPPRESSED, "from": window_from, "as_of": as_of,
             "from_date": window_from.date(), "resolved": list(RESOLVED)})
        invited_now: dict[str, int] = {}
        for tid, customer, touchpoint, ok, contacts in cur.fetchall():
            contacts += invited_now.get(customer, 0)
            reason = None
            if not ok:
                reason = "no consent to contact"
            elif contacts >= rules.contact_cap:
                reason = (f"contact cap: {contacts} contact(s) in {rules.contact_window_days} days "
                          f"(cap {rules.contact_cap})")
            status = "not_invited" if reason else "invited"
            if not reason:
                invited_now[customer] = invited_now.get(customer, 0) + 1
                stats.invited += 1
            else:
                stats.not_invited += 1
            cur.execute(
                "insert into ops.recovery_invitations (task_id, invitation_id, customer_id, "
                "touchpoint_code, status, reason, invite_date, run_id) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (task_id) do nothing",
                (tid, "RS" + hashlib.sha256(tid.encode()).hexdigest()[:14], customer,
                 touchpoint if touchpoint and touchpoint != "the relationship" else None,
                 status, reason, run_date, run_id))
        cur.execute("select invitation_id, customer_id, touchpoint_code, invite_date, task_id "
                    "from ops.recovery_invitations where status = 'invited' and invite_date = %s "
                    "order by invitation_id", (run_date,))
        rows = cur.fetchall()
        if rows:
            stats.file = str(_write(outbound_dir(settings), run_date, rows))
            cur.execute("update ops.recovery_invitations set file = %s "
                        "where status = 'invited' and invite_date = %s", (stats.file, run_date))
    return stats


def _write(root: Path, run_date: date, rows: list[tuple]) -> Path:
    """Write the day's file atomically (the survey tool may be polling the folder)."""
    folder = root / "survey" / "invitations" / run_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "invitations.csv"
    tmp = folder / ".invitations.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(INVITATION_COLUMNS)
        for inv_id, customer, touchpoint, day, tid in rows:
            w.writerow([inv_id, customer, "transactional", touchpoint or "", day.isoformat(),
                        "recovery", tid])
    os.replace(tmp, path)
    return path


def closed_effects(wh: Warehouse) -> list[dict[str, Any]]:
    """Resolved customer-facing tasks with their measured effect, for the nightly digest.

    The effect is the task's recovery-survey answer (``intermediate.int_task_recovery_answers``,
    the response carrying the invitation's id) against the answer that triggered the task
    (its evidence); without an answer yet, ``effect_source`` says so and the digest lists
    the task again once one arrives (its item carries the response id). Only answered
    invitations are joined, so this stays as small as the resolved tasks.
    """
    with wh.transaction() as cur:
        cur.execute("select to_regclass('intermediate.int_task_recovery_answers') is not null")
        answers = ("intermediate.int_task_recovery_answers" if cur.fetchone()[0] else
                   "(select null::text as task_id, null::text as response_id, "
                   "null::int as recovery_nps, null::int as recovery_csat) ")
        cur.execute(
            f"""select t.task_id, t.title, t.owner_team, t.owner_person, t.subject_id,
                       coalesce(t.closed_at, t.updated_at) as closed_at,
                       (t.evidence->>'nps')::numeric as nps_before,
                       (t.evidence->>'csat')::numeric as csat_before,
                       a.response_id, a.recovery_nps, a.recovery_csat, r.status as invitation
                from ops.improvement_tasks t
                left join ops.recovery_invitations r on r.task_id = t.task_id
                left join {answers} a on a.task_id = t.task_id
                where t.is_contact and t.subject_type = 'customer'
                  and t.status = any(%(resolved)s)
                order by coalesce(t.closed_at, t.updated_at), t.task_id""",
            {"resolved": list(RESOLVED)})
        cols = [d.name for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    for t in rows:
        if t["response_id"] is not None:
            t["effect_source"] = "recovery_survey"
        elif t["invitation"] == "invited":
            t["effect_source"] = "awaiting_recovery_answer"
        else:
            t["effect_source"] = "not_measured"
    return rows


def effect_text(t: dict[str, Any]) -> str:
    """``NPS 3 -> 9, CSAT 1 -> 5 (recovery survey)``; the measure before is the trigger's."""
    if t["effect_source"] != "recovery_survey":
        return ("no recovery answer yet" if t["effect_source"] == "awaiting_recovery_answer"
                else "not measured (no recovery survey sent)")
    parts = []
    for name, before, after in (("NPS", t["nps_before"], t["recovery_nps"]),
                                ("CSAT", t["csat_before"], t["recovery_csat"])):
        if after is not None:
            shown = "?" if before is None else f"{before:g}"
            parts.append(f"{name} {shown} -> {after}")
    return (", ".join(parts) or "answered, no score") + " (recovery survey)"
