"""``cxloop tasks ...``: list and export improvement tasks (registered on flows.cli.tasks_app).

Read-only: people change tasks in the warehouse or their ticketing tool, and the
next pipeline run logs and respects those edits; these commands only show them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import ConfigOpt, _open, console, handle_errors, tasks_app
from flows.errors import CxloopError

OwnerOpt = Annotated[str | None, typer.Option(
    "--owner", help="Owner team, owner person, assignee or escalation owner.")]
StatusOpt = Annotated[str | None, typer.Option(
    "--status", help="open, in_progress, done, resolved, dismissed or suppressed.")]
RuleOpt = Annotated[str | None, typer.Option("--rule", help="Rule name from tasks.yml.")]


def _rows(config: Path | None, owner: str | None, status: str | None, rule: str | None):
    from flows import actions

    s, wh = _open(config)
    return actions.list_tasks(wh, owner=owner, status=status, rule=rule)


@tasks_app.command("list")
@handle_errors
def tasks_list(
    owner: OwnerOpt = None,
    status: StatusOpt = None,
    rule: RuleOpt = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to show (0 = all).")] = 50,
) -> None:
    """Show improvement tasks, open and most urgent first."""
    rows = _rows(config, owner, status, rule)
    shown = rows if limit <= 0 else rows[:limit]
    t = Table("task", "P", "status", "rule", "subject", "owner", "due", "title",
              title=f"improvement tasks ({len(shown)} of {len(rows)})")
    for r in shown:
        owner_cell = f"{r['owner_team']}/{r['owner_person']}"
        if r["routed_to_fallback"]:
            owner_cell += " [yellow](fallback)[/]"
        if r["escalated_to"]:
            owner_cell += f" → {r['escalated_to']}"
        if r["assignee"]:
            owner_cell += f" ({r['assignee']})"
        status_cell = r["status"] + ("" if r["condition_active"] else " (cleared)")
        t.add_row(r["task_id"], str(r["priority"]), status_cell, r["rule"],
                  f"{r['subject_type']} {r['subject_id']}", owner_cell,
                  f"{r['due_at']:%Y-%m-%d %H:%M}", r["title"])
    console.print(t)


@tasks_app.command("export")
@handle_errors
def tasks_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default stdout).")] = None,
    owner: OwnerOpt = None,
    status: StatusOpt = None,
    rule: RuleOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export tasks for a ticketing tool: CSV (evidence as JSON text) or a JSON array."""
    from flows import actions

    if fmt not in ("csv", "json"):
        raise CxloopError(f"--format must be csv or json, not {fmt!r}")
    rows = _rows(config, owner, status, rule)
    text = actions.export_rows(rows, fmt)  # type: ignore[arg-type]
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {len(rows)} task(s) to {out}")
