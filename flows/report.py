"""Report: the run record in ``ops.pipeline_runs`` and the summary a manager reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from psycopg2.extras import Json

from flows.load import BatchResult
from flows.warehouse import Warehouse


@dataclass
class RunSummary:
    """Everything a run did, gathered as it goes; written once at the end."""

    run_id: str
    flow: str
    start_date: date
    end_date: date
    status: str = "running"
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: list[BatchResult] = field(default_factory=list)
    model_version: str | None = None
    model_note: str = ""
    tasks: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    # Things a person should know that did not stop the run (an expected extract missing).
    warnings: list[str] = field(default_factory=list)
    # The stage running now; after a failure, the one that failed.
    current_stage: str | None = None
    # The resolved configuration the run used (secrets masked), kept with its record.
    settings: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for b in self.batches if b.status == status)

    @property
    def rows_loaded(self) -> int:
        return sum(b.rows_loaded for b in self.batches)

    @property
    def rows_quarantined(self) -> int:
        return sum(b.rows_quarantined for b in self.batches)

    @property
    def rejected(self) -> list[BatchResult]:
        return [b for b in self.batches if b.status == "rejected"]

    @property
    def corrections(self) -> list[BatchResult]:
        """Batches that replaced an earlier delivery of their entity's day."""
        return [b for b in self.batches if b.change is not None]

    def final_status(self) -> str:
        return "completed_with_rejections" if self.rejected else "completed"

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "batches"}
        d["batches"] = {s: self.count(s) for s in ("loaded", "skipped", "rejected")}
        d["rows_loaded"] = self.rows_loaded
        d["rows_quarantined"] = self.rows_quarantined
        d["rejections"] = [{"file": b.source_file, "error": b.error} for b in self.rejected]
        d["corrections"] = [
            {"file": b.source_file, "batch_id": b.batch_id, "replaces": b.change.replaces,
             "rows_added": b.change.rows_added, "rows_removed": b.change.rows_removed,
             "rows_changed": b.change.rows_changed}
            for b in self.corrections if b.change is not None]
        return json.loads(json.dumps(d, default=str))


def mark_stale_runs(wh: Warehouse) -> int:
    """Runs left 'running' by a crash: we hold the lock now, so they are dead."""
    with wh.transaction() as cur:
        cur.execute("update ops.pipeline_runs set status = 'crashed', finished_at = now() "
                    "where status = 'running'")
        return cur.rowcount


def start_run(wh: Warehouse, s: RunSummary) -> None:
    with wh.transaction() as cur:
        cur.execute(
            "insert into ops.pipeline_runs (run_id, flow, start_date, end_date, status, "
            "started_at) values (%s, %s, %s, %s, 'running', now()) on conflict (run_id) do update "
            "set status = 'running', started_at = now(), finished_at = null, error = null",
            (s.run_id, s.flow, s.start_date, s.end_date),
        )


def finish_run(wh: Warehouse, s: RunSummary, markdown: str) -> None:
    with wh.transaction() as cur:
        cur.execute(
            "update ops.pipeline_runs set status = %s, finished_at = now(), stages = %s, "
            "batches_loaded = %s, batches_rejected = %s, rows_loaded = %s, rows_quarantined = %s, "
            "model_version = %s, tasks_created = %s, tasks_updated = %s, tasks_escalated = %s, "
            "summary_markdown = %s, error = %s, warnings = %s, settings = %s where run_id = %s",
            (s.status, Json(s.stages), s.count("loaded"), s.count("rejected"), s.rows_loaded,
             s.rows_quarantined, s.model_version, s.tasks.get("created"),
             s.tasks.get("updated"), s.tasks.get("escalated"), markdown, s.error,
             Json(s.warnings), Json(s.settings), s.run_id),
        )


def _query(wh: Warehouse, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a highlight query; a mart not built yet (first failed run) gives none."""
    import psycopg2

    try:
        with wh.transaction() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        return []


# The manager's highlights, in reading order: key, title and column headers. The run
# summary, the HTML report and `cxloop demo` all render from this one list.
HIGHLIGHTS: list[tuple[str, str, list[str]]] = [
    ("worst_touchpoints", "Worst touchpoints (action-priority quadrant)",
     ["touchpoint", "quadrant", "importance", "mean rating"]),
    ("at_risk", "Customers most at risk (value at risk)",
     ["customer", "segment", "P(churn 90d)", "value at risk", "tier"]),
    ("tasks_by_owner", "Improvement tasks by owner",
     ["team", "owner", "open", "suppressed", "top priority"]),
]


def highlights(wh: Warehouse) -> dict[str, list[tuple]]:
    """What a manager reads first: worst touchpoints, customers most at risk, tasks by owner."""
    return {
        "worst_touchpoints": _query(
            wh,
            "select touchpoint_code, quadrant, round(importance::numeric, 3), "
            "round(performance::numeric, 2) from marts.mart_priority_quadrant "
            "where is_headline order by (quadrant = 'fix_first') desc, importance desc limit 5"),
        "at_risk": _query(
            wh,
            "select customer_id, segment, round(churn_prob_90::numeric, 3), "
            "round(value_at_risk::numeric, 0), value_tier from marts.mart_customer_360 "
            "where churn_prob_90 is not null order by value_at_risk desc nulls last limit 5"),
        "tasks_by_owner": _query(
            wh,
            "select owner_team, owner_person, count(*) filter (where status = 'open'), "
            "count(*) filter (where status = 'suppressed'), min(priority) "
            "from ops.improvement_tasks group by 1, 2 order by 3 desc limit 10"),
    }


def _table(headers: list[str], rows: list[tuple]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def markdown(s: RunSummary, hl: dict[str, list[tuple]]) -> str:
    """The run summary as markdown (Prefect artifact and ``ops.pipeline_runs``)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# cxloop {s.flow} {s.start_date}" + (f" → {s.end_date}" if s.end_date != s.start_date
                                                else ""),
        f"Status **{s.status}** · run `{s.run_id}` · {when}",
        "",
        "## Ingestion",
        f"- batches loaded {s.count('loaded')}, skipped (already loaded) {s.count('skipped')}, "
        f"rejected {s.count('rejected')}",
        f"- rows loaded {s.rows_loaded:,}, quarantined {s.rows_quarantined:,}",
    ]
    for b in s.rejected[:10]:
        lines.append(f"- rejected: {b.error}")
    for b in s.corrections[:20]:
        if b.change is not None:
            lines.append(f"- correction: {b.source_file} (batch {b.batch_id[:12]}) "
                         f"{b.change.describe()}")
    for w in s.warnings:
        lines.append(f"- warning: {w}")
    lines += ["", "## Stages", _table(
        ["stage", "seconds", "detail"],
        [(k, f"{v.get('seconds', 0):.1f}", v.get("detail", "")) for k, v in s.stages.items()])]
    lines += ["## Churn model", f"{s.model_version or 'none'}: {s.model_note}", ""]
    for key, title, headers in HIGHLIGHTS:
        lines += [f"## {title}", _table(headers, hl.get(key, []))]
    if s.docs:
        lines += ["## Docs"] + [f"- {k}: {v}" for k, v in s.docs.items()]
    return "\n".join(lines) + "\n"
