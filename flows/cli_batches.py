"""``cxloop batches``: what was loaded, reconcile every row, retry rejected files."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import ConfigOpt, _open, app, console, err_console, handle_errors
from flows.errors import CxloopError

batches_app = typer.Typer(
    help="Batches: recent ones (no subcommand), `reconcile` every row, `retry` rejected files.")
app.add_typer(batches_app, name="batches")


@batches_app.callback(invoke_without_command=True)
@handle_errors
def batches(
    ctx: typer.Context,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="How many recent batches.")] = 30,
    status: Annotated[str | None, typer.Option(help="loaded, rejected or superseded.")] = None,
) -> None:
    """List recent batches and what happened to them."""
    if ctx.invoked_subcommand is not None:
        return
    s, wh = _open(config)
    with wh.transaction() as cur:
        cur.execute("select batch_id, extract_date, entity, status || coalesce(' by ' || "
                    "superseded_by, ''), rows_in, rows_loaded, rows_quarantined, source_file, "
                    "coalesce(error, '') from ops.load_batches "
                    "where %(st)s::text is null or status = %(st)s "
                    "order by started_at desc, extract_date desc limit %(n)s",
                    {"st": status, "n": limit})
        rows = cur.fetchall()
    t = Table("batch", "date", "entity", "status", "in", "loaded", "quarantined", "file", "error")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def _since(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CxloopError(f"--since {value!r}: not a date, expected YYYY-MM-DD") from None


@batches_app.command("reconcile")
@handle_errors
def reconcile_cmd(
    entity: Annotated[str | None, typer.Option("--entity", "-e",
                      help="Only this entity.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only extract dates on or after this one (YYYY-MM-DD).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Per entity and extract date: rows in files = loaded + quarantined + in rejected files.

    From ops.load_batches, each loaded batch checked against the rows raw and quarantine
    hold. Exits 1 if anything does not balance. A rejected file whose rows could not be
    counted (a Parquet file without its footer) is listed, not counted.
    """
    from flows import batches as b

    b.check_entity(entity)
    since_date = _since(since)
    _, wh = _open(config)
    rows = b.reconcile(wh, entity, since_date)
    t = Table("date", "entity", "files", "rows in files", "loaded", "quarantined",
              "in rejected files", "unaccounted", "", title="rows reconciled")
    for x in rows:
        t.add_row(str(x.extract_date), x.entity, str(x.files), f"{x.rows_in:,}",
                  f"{x.loaded:,}", f"{x.quarantined:,}", f"{x.rejected_rows:,}",
                  f"{x.unaccounted:,}", "ok" if x.balanced else "[red]NOT BALANCED[/]")
    t.add_section()
    t.add_row("total", "", str(sum(x.files for x in rows)), f"{sum(x.rows_in for x in rows):,}",
              f"{sum(x.loaded for x in rows):,}", f"{sum(x.quarantined for x in rows):,}",
              f"{sum(x.rejected_rows for x in rows):,}",
              f"{sum(x.unaccounted for x in rows):,}", "")
    console.print(t)
    for x in rows:
        for f in x.uncountable:
            err_console.print(f"[yellow]not counted:[/] {x.entity} {x.extract_date}: {f} was "
                              "rejected and its rows cannot be counted", highlight=False)
        for p in x.problems:
            err_console.print(f"[red]does not balance:[/] {x.entity} {x.extract_date}: {p}",
                              highlight=False)
    bad = [x for x in rows if not x.balanced]
    if not rows:
        console.print("no batches recorded" + (f" for {entity}" if entity else "")
                      + (f" since {since_date}" if since_date else ""))
    elif bad:
        err_console.print(f"[red]{len(bad)} entity-date(s) do not balance[/]", highlight=False)
        raise typer.Exit(1)
    else:
        console.print(f"balanced: {len(rows)} entity-date(s), "
                      f"{sum(x.rows_in for x in rows):,} rows")


@batches_app.command("retry")
@handle_errors
def retry_cmd(
    batch_id: Annotated[str | None, typer.Argument(
        help="A rejected batch's id (see `cxloop batches --status rejected`).")] = None,
    rejected: Annotated[bool, typer.Option(
        "--rejected", help="Every rejected batch whose file has not loaded since.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Load rejected files again now, with today's cxloop.yml (encoding, delimiter, mapping).

    Runs under the run lock like a run. Loaded rows reach the marts with the next
    `cxloop run`. Exits 4 if a file is still rejected.
    """
    from flows import batches as b

    if bool(batch_id) == rejected:
        raise CxloopError("say what to retry: a batch id, or --rejected (not both)")
    s, wh = _open(config)
    ids = [batch_id] if batch_id else b.rejected_batch_ids(wh)
    if not ids:
        console.print("nothing to retry: no rejected batch is waiting")
        return
    results, problems = b.retry(wh, s, ids)
    t = Table("batch", "date", "entity", "now", "rows in", "loaded", "quarantined", "file")
    for r in results:
        t.add_row(r.batch_id, str(r.extract_date), r.entity, r.status, f"{r.rows_in:,}",
                  f"{r.rows_loaded:,}", f"{r.rows_quarantined:,}", Path(r.source_file).name)
    if results:
        console.print(t)
    for r in results:
        if r.status == "rejected":
            err_console.print(f"[red]still rejected:[/] {r.error}", highlight=False)
    for p in problems:
        err_console.print(f"[yellow]not retried:[/] {p}", highlight=False)
    loaded = sum(1 for r in results if r.status == "loaded")
    console.print(f"retried {len(results)} batch(es): {loaded} loaded"
                  + ("; marts include them after the next `cxloop run`" if loaded else ""))
    if problems and not results:
        raise typer.Exit(2)
    if any(r.status == "rejected" for r in results):
        raise typer.Exit(4)
