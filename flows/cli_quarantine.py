"""``cxloop quarantine``: look at rows that failed validation, replay them after a fix."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import ConfigOpt, _open, console, handle_errors, quarantine_app
from flows.errors import CxloopError


@quarantine_app.command("show")
@handle_errors
def quarantine_show(
    entity: Annotated[str, typer.Argument(help="Entity, e.g. responses.")],
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
) -> None:
    """Show quarantined rows of an entity with the rules they broke."""
    from psycopg2 import sql

    from flows.entities import entity as get_entity

    try:
        e = get_entity(entity)
    except KeyError as err:
        raise CxloopError(str(err.args[0])) from None
    s, wh = _open(config)
    with wh.transaction() as cur:
        # Rows of a delivery a correction replaced are kept for audit, not shown as current.
        cur.execute(sql.SQL("select _source_file, _row_number, reasons, raw_values::text from "
                            "quarantine.{} q where not exists (select 1 from ops.load_batches b "
                            "where b.batch_id = q._batch_id and b.status = 'superseded') "
                            "order by _quarantined_at desc, _row_number limit %s")
                    .format(sql.Identifier(e.name)), (limit,))
        rows = cur.fetchall()
    t = Table("file", "row", "reasons", "values")
    for r in rows:
        t.add_row(*[str(v) for v in r])
    console.print(t)


@quarantine_app.command("replay")
@handle_errors
def quarantine_replay(
    batch_id: Annotated[str | None, typer.Argument(
        help="Batch id (see `cxloop batches`); or use --entity / --all.")] = None,
    entity: Annotated[str | None, typer.Option(
        "--entity", "-e", help="Replay every batch of this entity with quarantined rows.")] = None,
    since: Annotated[str | None, typer.Option(
        help="With --entity or --all: only batches extracted on or after this date "
             "(YYYY-MM-DD).")] = None,
    all_entities: Annotated[bool, typer.Option(
        "--all", help="Replay every batch with quarantined rows, of every entity.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Re-validate quarantined rows after a fix to the suite or reference data.

    One batch (BATCH), or in bulk every batch of an entity (--entity E) or of all
    entities (--all) that has quarantined rows: under one run lock, one GX context and
    one Data Docs build, with one validation per entity whatever the number of batches.
    """
    from flows import load, replay
    from flows.entities import ENTITIES
    from flows.entities import entity as get_entity
    from flows.validate import GxRunner
    from flows.warehouse import run_lock

    if batch_id and (entity or all_entities):
        raise CxloopError("give a batch id, or --entity / --all, not both")
    if entity and all_entities:
        raise CxloopError("give --entity E or --all, not both")
    if not (batch_id or entity or all_entities):
        raise CxloopError("say what to replay: a batch id, --entity E or --all")
    if since and batch_id:
        raise CxloopError("--since selects batches of --entity or --all; a batch id needs none")
    since_date = None
    if since:
        try:
            since_date = date.fromisoformat(since)
        except ValueError:
            raise CxloopError(f"--since {since!r}: not a date, expected YYYY-MM-DD") from None
    names = list(ENTITIES) if all_entities else [entity] if entity else []
    for name in names:
        try:
            get_entity(name)
        except KeyError as err:
            raise CxloopError(f"--entity: {err.args[0]}") from None
    s, wh = _open(config)
    started = datetime.now(UTC)
    with run_lock(wh, s.lock_timeout_seconds, f"replay-{batch_id or entity or 'all'}"):
        load.refresh_reference(wh, s)
        if batch_id:
            gx = GxRunner(Path(s.home), wh.sqlalchemy_url())
            moved, kept = replay.replay_quarantine(wh, gx, batch_id)
            docs = gx.build_docs(started)
            console.print(f"batch {batch_id}: {moved} row(s) now pass and moved to raw, "
                          f"{kept} still quarantined")
        else:
            todo = {n: replay.batches_to_replay(wh, n, since_date) for n in names}
            if not any(todo.values()):
                where = f"of {entity}" if entity else "of any entity"
                after = f" extracted on or after {since_date}" if since_date else ""
                console.print(f"nothing to replay: no loaded batch {where}{after} has "
                              "quarantined rows")
                return
            gx = GxRunner(Path(s.home), wh.sqlalchemy_url())
            results = []
            for name, batches in todo.items():
                results += replay.replay_batches(wh, gx, name, batches)
            docs = gx.build_docs(started)
            _print_replay(results)
    if docs:
        console.print(f"GX Data Docs: {docs}")


def _print_replay(results: list) -> None:
    """One row per replayed batch, then the totals."""
    t = Table("batch", "date", "entity")
    for name in ("replayed", "moved to raw", "still quarantined"):
        t.add_column(name, justify="right")
    t.add_column("file")
    for r in results:
        t.add_row(r.batch_id, str(r.extract_date), r.entity, f"{r.rows:,}", f"{r.moved:,}",
                  f"{r.kept:,}", Path(r.source_file).name)
    t.add_section()
    t.add_row(f"{len(results)} batch(es)", "", "", f"{sum(r.rows for r in results):,}",
              f"{sum(r.moved for r in results):,}", f"{sum(r.kept for r in results):,}", "")
    console.print(t)
