"""Committing a month's new batches of an entity: quarantine, detach, attach, record.

The files of one month that a run loads were COPYed into one group table (a text-staged
file into its own); all of them commit in one transaction: failing rows move to
quarantine, the tables move from the stage to ``raw``, and each batch gets its
``ops.load_batches`` row. A crash leaves each batch wholly loaded and recorded or not
at all. A re-delivered day replaces the earlier batch in that same transaction
(flows/corrections.py), in load order, so the newest delivery of a day wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

# The package, not flows.corrections: ``supersede`` is looked up on ``flows.load`` at
# call time, so a benchmark that replaces ``flows.load.supersede`` times the real call.
from flows import load as _package
from flows.entities import Entity
from flows.load.quarantine import quarantine_many
from flows.load.records import RECORD_SQL, RECORD_TEMPLATE, BatchResult, Staged, _record
from flows.load.tables import (
    _attach,
    _attach_many,
    _batch_ref,
    _stage_ref,
    batch_table,
)
from flows.validate import TYPED


@dataclass
class Group:
    """One month's staged batches of an entity, which commit together.

    ``table`` holds the typed-COPYed ones (None when there are none); a text-staged
    batch has its own table, named by ``batch_table``. ``members`` in load order."""

    table: str | None
    members: list[Staged] = field(default_factory=list)

    @property
    def typed(self) -> list[Staged]:
        return [s for s in self.members if s.kind == TYPED]


def _detach(cur: psycopg2.extensions.cursor, e: Entity, table: sql.Composed) -> None:
    """Off the stage, without the stage's defaults: what stays is a plain batch table."""
    # Rows keep their stored values; only the defaults for future inserts go.
    cur.execute(sql.SQL("alter table {} alter column _batch_id drop default, "
                        "alter column _source_file drop default, "
                        "alter column _row_number drop default, "
                        "alter column _extract_date drop default").format(table))
    cur.execute(sql.SQL("alter table {} detach partition {}").format(_stage_ref(e.name), table))


def _may_supersede(cur: psycopg2.extensions.cursor, e: Entity,
                   members: list[Staged]) -> set[tuple[str, object]]:
    """(source, extract date) of the batches that might replace an earlier delivery: a
    loaded batch of that day exists, or the group holds several of that day. One query,
    so that the other batches are recorded together without a look-up each."""
    days = [(s.batch.source, s.batch.extract_date) for s in members]
    cur.execute("select distinct source, extract_date from ops.load_batches where entity = %s "
                "and status = 'loaded' and extract_date = any(%s)",
                (e.name, sorted({d for _, d in days})))
    out = set(cur.fetchall())
    return out | {d for d in days if days.count(d) > 1}


def _commit_group(cur: psycopg2.extensions.cursor, e: Entity, g: Group, run_id: str,
                  failing: set[str]) -> list[BatchResult]:
    """Commit a group's batches in the caller's transaction; one result each, load order.
    ``failing``: the batches with rows in ``_failures``."""
    moved: dict[str, int] = {}
    raw = sql.SQL("raw.{}").format(sql.Identifier(e.name))
    if g.table is not None:
        table = _batch_ref(g.table)
        moved.update(quarantine_many(cur, e, [s for s in g.typed
                                              if s.batch.batch_id in failing], table))
        _detach(cur, e, table)
        _attach_many(cur, raw, table, [s.batch.batch_id for s in g.typed])
    for s in g.members:
        if s.kind == TYPED:
            continue
        table = _batch_ref(batch_table(e.name, s.batch.batch_id))
        if s.batch.batch_id in failing:
            moved.update(quarantine_many(cur, e, [s], table))
        _detach(cur, e, table)
        _attach(cur, raw, table, s.batch.batch_id)
    for s in g.members:
        quarantined = moved.get(s.batch.batch_id, 0)
        if s.typed_rows + quarantined != s.rows_in:
            raise RuntimeError(f"{s.batch.path}: {s.rows_in} rows in but {s.typed_rows} "
                               f"loaded + {quarantined} quarantined")
    maybe = _may_supersede(cur, e, g.members)
    now = time.monotonic()
    results = {}
    quiet = [s for s in g.members if (s.batch.source, s.batch.extract_date) not in maybe]
    if quiet:  # replace nothing: recorded in one statement
        execute_values(cur, RECORD_SQL, [
            _record_args(s, run_id, moved.get(s.batch.batch_id, 0), now - s.started)
            for s in quiet], template=RECORD_TEMPLATE, page_size=1000)
    for s in quiet:
        results[s.batch.batch_id] = _result(s, moved, now, None)
    for s in g.members:  # in load order: the newest delivery of a day replaces the others
        if s.batch.batch_id in results:
            continue
        seconds = time.monotonic() - s.started
        _record(cur, s.batch, "loaded", run_id, s.rows_in, s.typed_rows,
                moved.get(s.batch.batch_id, 0), None, seconds)
        # A re-delivery of the entity's day (by the source's rule) replaces the earlier
        # batch: its rows leave raw in this same transaction (flows/corrections.py).
        change = _package.supersede(cur, e, s.batch, run_id)
        results[s.batch.batch_id] = _result(s, moved, s.started + seconds, change)
    return [results[s.batch.batch_id] for s in g.members]


def _record_args(s: Staged, run_id: str, quarantined: int, seconds: float) -> tuple:
    b = s.batch
    return (b.batch_id, b.source, b.entity, b.extract_date, str(b.path), b.content_hash,
            s.rows_in, s.typed_rows, quarantined, "loaded", None, run_id, seconds, seconds)


def _result(s: Staged, moved: dict[str, int], done: float, change) -> BatchResult:
    b = s.batch
    return BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path), "loaded",
                       s.rows_in, s.typed_rows, moved.get(b.batch_id, 0), None,
                       done - s.started, change)
