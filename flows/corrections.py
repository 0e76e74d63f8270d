"""Corrections: a re-delivery of an entity's day replaces the earlier delivery's rows.

A sender who finds a mistake in yesterday's export sends the day again. Which earlier
batches the new one replaces is the source's rule (``sources.<name>.corrections``):

* ``same_name`` (default): the loaded batch of the same file name, entity and extract
  date (the file was overwritten in its day folder);
* ``newest_of_day``: every loaded batch of the entity's day; the file loaded last is
  the day's delivery (files found together load oldest first: modification time, then
  name), so a correction may come under a new name (``orders_v2.csv``).

Replacing happens in the new batch's load transaction: the replaced batches' tables
are detached from ``raw.<entity>`` and moved to ``raw_superseded`` (rows of a batch that
shares its month's partition are moved there instead) (kept for audit,
out of every reader's way), their ``ops.load_batches`` rows become ``superseded`` with
the replacing batch named, and ``ops.batch_changes`` records the rows added, removed
and changed by the entity's key, and the earliest date the change touches.

Why detach rather than filter on status in the staging macro: a detached partition is
not planned by any reader of ``raw`` at all, so every staging view, dbt test, replay's key
check and ``missing_inputs`` is right without knowing about corrections, and the cost of
reading raw does not grow with the replaced deliveries kept for audit. A status filter
would be a join to ``ops.load_batches`` in each of the seven staging views (and in every
other reader) and would still scan the replaced rows. Detaching is a catalogue change, not
a rewrite of rows. Measured (``benchmarks/corrections_bench.py --rows 200000``, busy
2-core machine): replacing a 200k-row day took 1.4 s of a 4.2 s load (diff by key +
detach); a staging-style read was 0.46 s detached vs 0.41 s filtered with one replaced
day (within noise: the filter's cost is the extra scan, which grows with what is kept).

The replaced batches' quarantined rows stay in ``quarantine.<entity>`` for audit; replay
takes only loaded batches, and ``cxloop quarantine show`` lists the current ones.

Under ``same_name``, a replaced delivery found again (the sender took the correction
back) is reinstated: it becomes current and replaces what had replaced it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import PurePath
from typing import TYPE_CHECKING

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from flows.entities import ENTITIES, Entity

if TYPE_CHECKING:  # annotations only: flows.warehouse imports this module
    from flows.extract import Batch

RULES = ("same_name", "newest_of_day")
SUPERSEDED_SCHEMA = "raw_superseded"
BATCH_SCHEMA = "raw_batches"  # as flows/load/tables.py; not imported to keep the modules apart


@dataclass
class Change:
    """What a replacing batch changed in the rows served for its entity and day."""

    replaces: list[str]
    rows_added: int
    rows_removed: int
    rows_changed: int
    first_affected_date: date | None = None
    reinstated: bool = False  # a replaced delivery found again, current once more

    def describe(self) -> str:
        again = "reinstated, " if self.reinstated else ""
        return (f"{again}replaces {', '.join(b[:12] for b in self.replaces)}: "
                f"{self.rows_added} added, {self.rows_removed} removed, "
                f"{self.rows_changed} changed")


def _file_name(path: str | PurePath) -> str:
    """The name a delivery is known by: the last part of its path (a moved landing
    folder keeps its files' names)."""
    return PurePath(str(path)).name


def _mtime(b: Batch) -> float:
    try:
        return os.stat(b.path).st_mtime if b.payload is None else 0.0
    except OSError:
        return 0.0


def load_order(batches: Iterable[Batch]) -> list[Batch]:
    """Batches in the order they should load: as found (date by date), except that the
    files of one day under ``newest_of_day`` go oldest first, so the newest is the one
    that ends up replacing the others."""
    found = list(batches)
    pos = {id(b): i for i, b in enumerate(found)}
    return sorted(found, key=lambda b: (
        b.extract_date, b.source,
        (_mtime(b), _file_name(b.path)) if b.corrections == "newest_of_day" else (0.0, ""),
        pos[id(b)]))


def replaced_batches(cur: psycopg2.extensions.cursor, batch: Batch) -> list[str]:
    """The loaded batches of the entity's day that ``batch`` replaces, by its source's rule."""
    cur.execute("select batch_id, source_file from ops.load_batches where source = %s "
                "and entity = %s and extract_date = %s and status = 'loaded' "
                "and batch_id <> %s order by started_at, batch_id",
                (batch.source, batch.entity, batch.extract_date, batch.batch_id))
    rows = cur.fetchall()
    if batch.corrections == "newest_of_day":
        return [b for b, _ in rows]
    name = _file_name(batch.path)
    return [b for b, f in rows if _file_name(f) == name]


def _earliest_date(e: Entity, alias: str) -> sql.Composable:
    """The earliest of a row's dates and timestamps, as a date: the first day whose marts
    a change to the row can touch (a response moves its invitation's day too, a customer
    version its segment back to signup)."""
    dated = [c.name for c in e.raw_columns if c.pg_type.startswith(("date", "timestamp"))]
    if not dated:
        return sql.SQL("null::date")
    return sql.SQL("least({})").format(sql.SQL(", ").join(
        sql.SQL("cast({}.{} as date)").format(sql.Identifier(alias), sql.Identifier(c))
        for c in dated))


def _diff(cur: psycopg2.extensions.cursor, e: Entity, new_id: str,
          old_ids: list[str]) -> tuple[int, int, int, date | None]:
    """Rows added, removed and changed by key between the old batches and the new one,
    each side taken as staging would (the latest row per key), and the earliest date
    among the rows that differ."""
    raw = sql.SQL("raw.{}").format(sql.Identifier(e.name))
    keys = sql.SQL(", ").join(map(sql.Identifier, e.key))
    latest = sql.SQL("_extract_date desc, _loaded_at desc, _row_number desc")
    on = sql.SQL(" and ").join(sql.SQL("n.{k} = o.{k}").format(k=sql.Identifier(k))
                               for k in e.key)
    cols = [c for c in e.raw_column_names if c not in e.key]
    n_row = sql.SQL(", ").join(sql.SQL("n.{}").format(sql.Identifier(c)) for c in cols)
    o_row = sql.SQL(", ").join(sql.SQL("o.{}").format(sql.Identifier(c)) for c in cols)
    n_ev, o_ev = _earliest_date(e, "n"), _earliest_date(e, "o")
    cur.execute(sql.SQL(
        "with n as (select distinct on ({keys}) * from {raw} where _batch_id = %(new)s "
        "order by {keys}, {latest}), "
        "o as (select distinct on ({keys}) * from {raw} where _batch_id = any(%(old)s) "
        "order by {keys}, {latest}), "
        "j as (select n._row_number is not null as in_new, o._row_number is not null as in_old, "
        "row({n_row}) is distinct from row({o_row}) as differs, {n_ev} as n_ev, {o_ev} as o_ev "
        "from n full join o on {on}) "
        "select count(*) filter (where not in_old), count(*) filter (where not in_new), "
        "count(*) filter (where in_new and in_old and differs), "
        "min(least(n_ev, o_ev)) filter (where not (in_new and in_old) or differs) from j"
    ).format(keys=keys, raw=raw, latest=latest, n_row=n_row, o_row=o_row, n_ev=n_ev,
             o_ev=o_ev, on=on), {"new": new_id, "old": old_ids})
    added, removed, changed, first = cur.fetchone()
    return int(added), int(removed), int(changed), first


def _set_aside(cur: psycopg2.extensions.cursor, e: Entity, batch_id: str) -> None:
    """Take a replaced batch's rows out of ``raw.<entity>`` into ``raw_superseded``."""
    name = f"{e.name}__{batch_id}"
    raw = sql.SQL("raw.{}").format(sql.Identifier(e.name))
    kept = sql.SQL("{}.{}").format(sql.Identifier(SUPERSEDED_SCHEMA), sql.Identifier(name))
    cur.execute(sql.SQL("drop table if exists {}").format(kept))
    cur.execute(
        "select exists (select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass and c.relnamespace = %s::regnamespace "
        "and c.relname = %s)", (f'raw."{e.name}"', BATCH_SCHEMA, name))
    if cur.fetchone()[0]:  # its own partition: detached and moved, no row is rewritten
        own = sql.SQL("{}.{}").format(sql.Identifier(BATCH_SCHEMA), sql.Identifier(name))
        cur.execute(sql.SQL("alter table {} detach partition {}").format(raw, own))
        cur.execute(sql.SQL("alter table {} set schema {}").format(
            own, sql.Identifier(SUPERSEDED_SCHEMA)))
        return
    # A partition shared by several batches (a month of a backfill, flows/load/commit.py,
    # or a warehouse from before partitioning): its rows are moved out, one scan.
    cur.execute(sql.SQL("create table {} (like {})").format(kept, raw))
    cur.execute(sql.SQL("with moved as (delete from {} where _batch_id = %s returning *) "
                        "insert into {} select * from moved").format(raw, kept), (batch_id,))


def supersede(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
              run_id: str) -> Change | None:
    """Let ``batch`` (attached to raw, recorded as loaded) replace the earlier delivery of
    its entity and day; None when it replaces nothing. Runs in the batch's transaction."""
    old = replaced_batches(cur, batch)
    if not old:
        return None
    added, removed, changed, first = _diff(cur, e, batch.batch_id, old)
    for b in old:
        _set_aside(cur, e, b)
    cur.execute("update ops.load_batches set status = 'superseded', superseded_by = %s "
                "where batch_id = any(%s)", (batch.batch_id, old))
    cur.execute(
        "insert into ops.batch_changes (batch_id, source, entity, extract_date, rule, "
        "replaces_batch_ids, rows_added, rows_removed, rows_changed, first_affected_date, run_id) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (batch.batch_id, batch.source, batch.entity, batch.extract_date, batch.corrections,
         old, added, removed, changed, first, run_id))
    return Change(old, added, removed, changed, first)


def set_aside_superseded(cur: psycopg2.extensions.cursor) -> int:
    """Migration: batches marked superseded before replacing took their rows out of raw
    (they were only labelled) are set aside now; returns how many. Idempotent: a batch
    already in ``raw_superseded`` is left alone."""
    cur.execute("select to_regclass('ops.load_batches') is not null")
    if not cur.fetchone()[0]:
        return 0
    cur.execute("select entity, batch_id from ops.load_batches where status = 'superseded' "
                "and entity = any(%s) and to_regclass(format('%%I.%%I', %s::text, "
                "entity || '__' || batch_id)) is null order by entity, started_at",
                (list(ENTITIES), SUPERSEDED_SCHEMA))
    todo = cur.fetchall()
    for entity, batch_id in todo:
        _set_aside(cur, ENTITIES[entity], batch_id)
    return len(todo)


def reinstatable(cur: psycopg2.extensions.cursor, batches: list[Batch]) -> list[Batch]:
    """Known batches found again that should be the current delivery once more.

    Under ``same_name`` a superseded batch found again means its file now holds the
    replaced content again (the sender took the correction back, or a SQL source's
    query returns the earlier rows): it replaces whatever replaced it. Under
    ``newest_of_day`` earlier files stay in the folder beside their correction, so
    finding them again means nothing.
    """
    cands = [b for b in batches if b.corrections == "same_name"]
    if not cands:
        return []
    cur.execute("select batch_id from ops.load_batches where batch_id = any(%s) "
                "and status = 'superseded'", ([b.batch_id for b in cands],))
    superseded = {r[0] for r in cur.fetchall()}
    return [b for b in cands if b.batch_id in superseded and replaced_batches(cur, b)]


def reinstate(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
              run_id: str) -> Change | None:
    """Make a superseded batch current again: its table back into ``raw`` (or its rows,
    when it was cut out of a partition shared by several batches), its record
    ``loaded``, and whatever replaced it superseded in turn. One transaction."""
    name = f"{e.name}__{batch.batch_id}"
    raw = sql.SQL("raw.{}").format(sql.Identifier(e.name))
    kept = sql.SQL("{}.{}").format(sql.Identifier(SUPERSEDED_SCHEMA), sql.Identifier(name))
    own = sql.SQL("{}.{}").format(sql.Identifier(BATCH_SCHEMA), sql.Identifier(name))
    cur.execute("savepoint reinstate")
    try:
        cur.execute(sql.SQL("alter table {} set schema {}").format(
            kept, sql.Identifier(BATCH_SCHEMA)))
        cur.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
            raw, own, sql.Literal(batch.batch_id)))
        cur.execute("release savepoint reinstate")
    except psycopg2.errors.InvalidObjectDefinition:  # its id is in a legacy shared partition
        cur.execute("rollback to savepoint reinstate")
        cur.execute(sql.SQL("insert into {} select * from {}").format(raw, kept))
        cur.execute(sql.SQL("drop table {}").format(kept))
    cur.execute("update ops.load_batches set status = 'loaded', superseded_by = null "
                "where batch_id = %s", (batch.batch_id,))
    change = supersede(cur, e, batch, run_id)
    if change is not None:
        change.reinstated = True
    return change
