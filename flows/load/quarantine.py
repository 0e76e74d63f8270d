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


def _quarantine(cur: psycopg2.extensions.cursor, e: Entity, s: Staged,
                table: sql.Composed) -> int:
    """Move a staged batch's failing rows to quarantine with every rule they broke."""
    b = s.batch.batch_id
    cur.execute("select exists (select 1 from _failures where batch_id = %s)", (b,))
    if not cur.fetchone()[0]:
        return 0
    failed = sql.SQL(
        "(select batch_id, row_number, array_agg(rule order by rule) as rules, "
        "string_agg(reason, '; ' order by rule) as reasons from _failures "
        "where batch_id = %(b)s and stage = {st} group by 1, 2) f")
    insert = sql.SQL("insert into quarantine.{} (_batch_id, _source_file, _row_number, "
                     "_extract_date, raw_values, failed_expectations, reasons) ").format(
        sql.Identifier(e.name))
    moved = 0
    if s.kind == PARSE:  # rows that did not parse: their text, as delivered
        cur.execute(insert + sql.SQL(
            "select s._batch_id, s._source_file, s._row_number, s._extract_date, "
            "to_jsonb(s) - '_batch_id' - '_source_file' - '_row_number' - '_extract_date', "
            "f.rules, f.reasons from raw.{stage} s join {failed} "
            "on f.batch_id = s._batch_id and f.row_number = s._row_number"
        ).format(stage=sql.Identifier(text_stage_table(e.name)),
                 failed=failed.format(st=sql.Literal(PARSE))), {"b": b})
        moved += cur.rowcount
    values = sql.SQL(", ").join(
        sql.SQL("{n}, s.{c}::text").format(n=sql.Literal(c), c=sql.Identifier(c))
        for c in e.raw_column_names)
    cur.execute(insert + sql.SQL(
        "select s._batch_id, s._source_file, s._row_number, s._extract_date, "
        "jsonb_build_object({values}), f.rules, f.reasons from {table} s join {failed} "
        "on f.batch_id = s._batch_id and f.row_number = s._row_number"
    ).format(values=values, table=table, failed=failed.format(st=sql.Literal(TYPED))), {"b": b})
    moved += cur.rowcount
    cur.execute(sql.SQL(
        "delete from {} s using _failures f where f.batch_id = s._batch_id "
        "and f.row_number = s._row_number and f.stage = {}"
    ).format(table, sql.Literal(TYPED)))
    s.typed_rows -= cur.rowcount
    return moved
