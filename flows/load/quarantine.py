"""Quarantine: a staged batch's failing rows, out of its table, with every rule they broke.

A bad row costs only itself: it moves to ``quarantine.<entity>`` as delivered (the
text of a row that did not parse), with its rules and reasons, where replay can find
it; the rest of the batch loads. Replay uses the same step.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from flows.entities import Entity
from flows.load.records import Staged
from flows.load.tables import text_stage_table
from flows.validate import PARSE, TYPED


def failing_batches(cur: psycopg2.extensions.cursor) -> set[str]:
    """The batches with at least one row in ``_failures``: the rest skip quarantine."""
    cur.execute("select distinct batch_id from _failures")
    return {r[0] for r in cur.fetchall()}


def _quarantine(cur: psycopg2.extensions.cursor, e: Entity, s: Staged,
                table: sql.Composed) -> int:
    """Move a staged batch's failing rows to quarantine with every rule they broke."""
    cur.execute("select exists (select 1 from _failures where batch_id = %s)",
                (s.batch.batch_id,))
    if not cur.fetchone()[0]:
        return 0
    return quarantine_many(cur, e, [s], table).get(s.batch.batch_id, 0)


def _counted(cur: psycopg2.extensions.cursor, statement: sql.Composable,
             params: dict) -> dict[str, int]:
    """Rows a data-modifying statement (``... returning _batch_id``) touched, per batch."""
    cur.execute(sql.SQL("with done as ({}) select _batch_id, count(*) from done group by 1")
                .format(statement), params)
    return dict(cur.fetchall())


def quarantine_many(cur: psycopg2.extensions.cursor, e: Entity, staged: list[Staged],
                    table: sql.Composed) -> dict[str, int]:
    """Move the failing rows of these batches, which all sit in ``table`` (a month's group
    table, or one batch's own), to quarantine in one statement each way; per batch, how
    many moved. Each batch's ``typed_rows`` goes down by its rows deleted from ``table``."""
    ids = [s.batch.batch_id for s in staged]
    if not ids:
        return {}
    failed = sql.SQL(
        "(select batch_id, row_number, array_agg(rule order by rule) as rules, "
        "string_agg(reason, '; ' order by rule) as reasons from _failures "
        "where batch_id = any(%(b)s) and stage = {st} group by 1, 2) f")
    insert = sql.SQL("insert into quarantine.{} (_batch_id, _source_file, _row_number, "
                     "_extract_date, raw_values, failed_expectations, reasons) ").format(
        sql.Identifier(e.name))
    moved: dict[str, int] = {}
    text_ids = [s.batch.batch_id for s in staged if s.kind == PARSE]
    if text_ids:  # rows that did not parse: their text, as delivered
        got = _counted(cur, insert + sql.SQL(
            "select s._batch_id, s._source_file, s._row_number, s._extract_date, "
            "to_jsonb(s) - '_batch_id' - '_source_file' - '_row_number' - '_extract_date', "
            "f.rules, f.reasons from raw.{stage} s join {failed} "
            "on f.batch_id = s._batch_id and f.row_number = s._row_number returning _batch_id"
        ).format(stage=sql.Identifier(text_stage_table(e.name)),
                 failed=failed.format(st=sql.Literal(PARSE))), {"b": text_ids})
        moved.update(got)
    values = sql.SQL(", ").join(
        sql.SQL("{n}, s.{c}::text").format(n=sql.Literal(c), c=sql.Identifier(c))
        for c in e.raw_column_names)
    got = _counted(cur, insert + sql.SQL(
        "select s._batch_id, s._source_file, s._row_number, s._extract_date, "
        "jsonb_build_object({values}), f.rules, f.reasons from {table} s join {failed} "
        "on f.batch_id = s._batch_id and f.row_number = s._row_number returning _batch_id"
    ).format(values=values, table=table, failed=failed.format(st=sql.Literal(TYPED))),
        {"b": ids})
    for b, n in got.items():
        moved[b] = moved.get(b, 0) + n
    deleted = _counted(cur, sql.SQL(
        "delete from {} s using _failures f where f.batch_id = s._batch_id "
        "and f.row_number = s._row_number and f.stage = {} and f.batch_id = any(%(b)s) "
        "returning s._batch_id"
    ).format(table, sql.Literal(TYPED)), {"b": ids})
    for s in staged:
        s.typed_rows -= deleted.get(s.batch.batch_id, 0)
    return moved
