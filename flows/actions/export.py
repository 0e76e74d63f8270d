"""Reading tasks back: for people (``cxloop tasks list``) and ticketing tools (export)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from flows.actions.rules import OPEN_STATUSES
from flows.actions.titles import jsonable
from flows.warehouse import Warehouse

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
    clean = [{k: jsonable(v) for k, v in r.items()} for r in rows]
    if fmt == "json":
        return json.dumps(clean, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in clean:
        w.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                    for k, v in r.items()})
    return buf.getvalue()
