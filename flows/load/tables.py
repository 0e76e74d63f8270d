"""Names and DDL of the stage and of the batch tables.

Every step of a load (staging, validation, quarantine, commit) and replay address the
same tables: the stage parent in ``raw``, the text stage, the typed tables in
``raw_batches`` (a month's group of batches, or one batch's own) and the stage's row
counter. Their names and shapes are defined once,
here, so the steps cannot disagree about them.
"""

from __future__ import annotations

import hashlib

import psycopg2
from psycopg2 import sql

from flows.entities import Entity
from flows.extract import Batch
from flows.warehouse import LINEAGE_COLUMNS

STAGE_LINEAGE = ("_batch_id", "_source_file", "_row_number", "_extract_date")
BATCH_SCHEMA = "raw_batches"


def stage_table(entity: str) -> str:
    """The partitioned parent, in ``raw``, of the typed tables of this run's new batches."""
    return f"_stage_{entity}"


def _stage_ref(entity: str) -> sql.Composed:
    return sql.SQL("raw.{}").format(sql.Identifier(stage_table(entity)))


def text_stage_table(entity: str) -> str:
    return f"_stage_text_{entity}"


def batch_table(entity: str, batch_id: str) -> str:
    """A batch's typed table in ``raw_batches``: staged, then a partition of ``raw``."""
    return f"{entity}__{batch_id}"


def _batch_ref(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(BATCH_SCHEMA), sql.Identifier(name))


def _seq(entity: str) -> sql.Composed:
    return sql.SQL("raw.{}").format(sql.Identifier(f"_stage_{entity}_rows"))


def _create_stage(cur: psycopg2.extensions.cursor, e: Entity) -> None:
    """A fresh stage; dropping the old one also drops any batch table a crashed run left."""
    t, tt = _stage_ref(e.name), sql.Identifier(text_stage_table(e.name))
    cur.execute(sql.SQL("drop table if exists {} cascade").format(t))
    cur.execute(sql.SQL("create table {} (like raw.{}) partition by list (_batch_id)")
                .format(t, sql.Identifier(e.name)))
    cols = [sql.SQL("{} text").format(sql.Identifier(c)) for c in e.raw_column_names]
    cur.execute(sql.SQL("drop table if exists raw.{}").format(tt))
    cur.execute(sql.SQL(
        "create unlogged table raw.{} ({}, _batch_id text, _source_file text, "
        "_row_number bigint, _extract_date date)"
    ).format(tt, sql.SQL(", ").join(cols)))
    cur.execute(sql.SQL("drop sequence if exists {}").format(_seq(e.name)))
    # Cached: nextval per row is then cheap; a restart still begins at 1.
    cur.execute(sql.SQL("create sequence {} cache 10000").format(_seq(e.name)))


def _drop_stage(cur: psycopg2.extensions.cursor, entity: str) -> None:
    """The end of a load or replay of ``entity``: its stage dropped, its text stage emptied."""
    cur.execute(sql.SQL("drop table {}").format(_stage_ref(entity)))
    cur.execute(sql.SQL("truncate raw.{}").format(sql.Identifier(text_stage_table(entity))))


def _create_batch_table(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
                        name: str) -> sql.Composed:
    """A typed table for one batch (a text-staged one's rows that parse, a replay's rows),
    to become its partition of ``raw``."""
    table = _batch_ref(name)
    # Left by a load whose record was removed (or by an earlier attempt): replaced.
    cur.execute(sql.SQL("drop table if exists {}").format(table))
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
             for n, t in LINEAGE_COLUMNS]
    cur.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(cols)))
    cur.execute(sql.SQL("alter table {} add check (_batch_id = {})").format(
        table, sql.Literal(batch.batch_id)))
    return table


def group_key(batch: Batch) -> str:
    """The month whose new batches of an entity share one table (and commit together)."""
    return f"{batch.extract_date:%Y%m}"


def group_table(entity: str, batches: list[Batch]) -> str:
    """The table a run COPYs these batches of one month into, then a partition of ``raw``
    for all their ids. One batch (a nightly run) keeps the batch's own name, so a
    correction of it moves the whole table aside (flows/corrections.py)."""
    if len(batches) == 1:
        return batch_table(entity, batches[0].batch_id)
    digest = hashlib.sha256("/".join(b.batch_id for b in batches).encode()).hexdigest()[:16]
    return f"{entity}__{group_key(batches[0])}_{digest}"


GROUP_CHECK = "batch_ids"


def _group_check(ids: list[str]) -> sql.Composed:
    # The same form as the partition bound, so ATTACH sees it implied and skips its scan.
    return sql.SQL("constraint {} check (_batch_id = any(array[{}]::text[]))").format(
        sql.Identifier(GROUP_CHECK), sql.SQL(", ").join(map(sql.Literal, ids)))


def _create_group_table(cur: psycopg2.extensions.cursor, e: Entity, name: str,
                        ids: list[str]) -> sql.Composed:
    """A typed table that the files of several batches are COPYed into, one after the
    other; each batch's lineage comes from column defaults set to its values before its
    COPY (``set_lineage``). Its CHECK on the batch ids is what lets both ATTACHes skip a
    scan."""
    table = _batch_ref(name)
    cur.execute(sql.SQL("drop table if exists {}").format(table))
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    cols += [sql.SQL("_batch_id text not null"), sql.SQL("_source_file text not null"),
             sql.SQL("_row_number bigint not null default nextval({})").format(
                 sql.Literal(_seq(e.name).as_string(cur.connection))),
             sql.SQL("_extract_date date not null"),
             sql.SQL("_loaded_at timestamptz not null default now()"), _group_check(ids)]
    cur.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(cols)))
    return table


def narrow_group_check(cur: psycopg2.extensions.cursor, table: sql.Composed,
                       ids: list[str]) -> None:
    """The group's CHECK down to the batches that stayed in it (a file rejected or staged
    as text left): one scan, only then."""
    cur.execute(sql.SQL("alter table {} drop constraint {}, add {}").format(
        table, sql.Identifier(GROUP_CHECK), _group_check(ids)))


def lineage_defaults(table: sql.Composable, batch: Batch,
                     *more: sql.Composable) -> sql.Composed:
    """``alter table`` giving the lineage columns of ``table`` the batch's values as
    their defaults (and ``more`` column clauses)."""
    clauses = [sql.SQL("alter column _batch_id set default {}").format(
                   sql.Literal(batch.batch_id)),
               sql.SQL("alter column _source_file set default {}").format(
                   sql.Literal(str(batch.path))),
               sql.SQL("alter column _extract_date set default {}").format(
                   sql.Literal(batch.extract_date)), *more]
    return sql.SQL("alter table {} {}").format(table, sql.SQL(", ").join(clauses))


def set_lineage(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
                table: sql.Composed) -> None:
    """Before a batch's COPY into a group table: its lineage as the columns' defaults, its
    row counter back at 1, and the batch's savepoint, in one round trip. Defaults that
    are constants cost COPY nothing per row; read from session settings
    (``current_setting`` per row and column), a month of contacts (859k rows) took
    3.53 s to COPY against 2.84 s (a bare COPY 1.61 s; benchmarks/copy_lineage.py). The
    DDL is made before the savepoint, so it outlives its rollback."""
    cur.execute(sql.SQL("{}; select setval({}::regclass, 1, false); savepoint batch").format(
        lineage_defaults(table, batch), sql.Literal(_seq(e.name).as_string(cur.connection))))


def _attach_many(cur: psycopg2.extensions.cursor, parent: sql.Composed, table: sql.Composed,
                 ids: list[str]) -> None:
    cur.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        parent, table, sql.SQL(", ").join(map(sql.Literal, ids))))


def _attach(cur: psycopg2.extensions.cursor, parent: sql.Composed, table: sql.Composed,
            batch_id: str) -> None:
    cur.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        parent, table, sql.Literal(batch_id)))


def source_zone(cur: psycopg2.extensions.cursor, source: str) -> None:
    """Read naive timestamps of ``source`` in its configured zone for the rest of this
    transaction (``sources.<src>.timezone``, stored by ``refresh_reference``); a
    timestamp with an offset keeps its instant whatever the zone."""
    cur.execute("select set_config('timezone', coalesce((select timezone from "
                "ops.ref_source_zones where source = %s), current_setting('timezone')), true)",
                (source,))
