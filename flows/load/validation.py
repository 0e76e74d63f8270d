"""Validation of the staged rows, and the collection of the rows that failed.

The entity's GX suite runs once over the whole stage. Its outcome becomes the temp
table ``_failures`` (batch, row, rule, reason), filled by the suite's own bad-row SQL,
and the load stops if that SQL does not find exactly the rows GX counted. Rows of a
text-staged batch that parse are cast into its typed table first, so the main suite
judges every batch alike.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
from psycopg2 import sql

from flows.entities import Entity
from flows.load.records import Staged
from flows.load.tables import (
    STAGE_LINEAGE,
    _attach,
    _create_batch_table,
    _stage_ref,
    batch_table,
    source_zone,
    stage_table,
    text_stage_table,
)
from flows.mapping import move_failures
from flows.validate import (
    PARSE,
    TYPED,
    GxRunner,
    ValidationOutcome,
    reference_parameters,
    stage_query,
)


def _create_failures(cur: psycopg2.extensions.cursor) -> None:
    cur.execute("drop table if exists pg_temp._failures")
    cur.execute("create temp table _failures (batch_id text, row_number bigint, rule text, "
                "reason text, stage text)")


def _collect_failures(cur: psycopg2.extensions.cursor, e: Entity, outcome: ValidationOutcome,
                      table: str, stage: str) -> None:
    """Record (batch, row, rule) for each failed rule, from the suite's own bad-row SQL,
    and stop if it does not find exactly the rows GX counted."""
    if outcome.batch_failures:
        raise RuntimeError(f"{e.name}: {table} failed table checks: {outcome.batch_failures}")
    for rule, query in outcome.failed_queries.items():
        cur.execute(
            sql.SQL("insert into _failures select _batch_id, _row_number, {r}, {d}, {s} "
                    "from ({q}) bad")
            .format(r=sql.Literal(rule), d=_reason(outcome.failed_rules[rule],
                                                   outcome.shows.get(rule, [])),
                    s=sql.Literal(stage), q=sql.SQL(stage_query(query, table)))
        )
        if cur.rowcount != outcome.observed.get(rule, cur.rowcount):
            raise RuntimeError(f"{e.name}.{rule}: GX counted {outcome.observed[rule]} bad rows, "
                               f"the quarantine query {cur.rowcount}")
    if outcome.failed_queries:
        cur.execute("create index on _failures (batch_id, row_number)")
        cur.execute("analyze _failures")


def _reason(description: str, shows: list[str]) -> sql.Composable:
    """A failing row's reason: the rule's message, then the values it judged
    (``monthly_value must be at least 0 (monthly_value = -99.00)``)."""
    if not shows:
        return sql.Literal(description)
    values = sql.SQL(" || ', ' || ").join(
        sql.SQL("{n} || coalesce(bad.{c}::text, 'empty')").format(
            n=sql.Literal(f"{c} = "), c=sql.Identifier(c)) for c in shows)
    return sql.SQL("{d} || ' (' || {v} || ')'").format(d=sql.Literal(description), v=values)


def _cast_parsed_rows(cur: psycopg2.extensions.cursor, e: Entity, s: Staged,
                      table: sql.Composed) -> int:
    """Rows of a text-staged batch that passed the parse rules, cast into its typed table."""
    source_zone(cur, s.batch.source)
    casts = sql.SQL(", ").join(
        sql.SQL("s.{c}::{t}").format(c=sql.Identifier(c.name), t=sql.SQL(c.pg_type))
        for c in e.raw_columns)
    cols = sql.SQL(", ").join(map(sql.Identifier, e.raw_column_names + list(STAGE_LINEAGE)))
    cur.execute(sql.SQL(
        "insert into {table} ({cols}) select {casts}, s._batch_id, s._source_file, "
        "s._row_number, s._extract_date from raw.{stage} s where s._batch_id = %(b)s "
        "and not exists (select 1 from _failures f where f.batch_id = s._batch_id "
        "and f.row_number = s._row_number)"
    ).format(table=table, cols=cols, casts=casts,
             stage=sql.Identifier(text_stage_table(e.name))), {"b": s.batch.batch_id})
    return cur.rowcount


def validate_staged(conn: psycopg2.extensions.connection, gx_runner: GxRunner, e: Entity,
                    suite: dict, staged: list[Staged],
                    table_for: Callable[[Staged], str] | None = None) -> None:
    """Run the suite on the committed stage and materialise the failing rows.

    Text-staged batches first go through the parse rules; their rows that parse are
    cast into a typed table on the stage, so the main suite judges every batch alike.
    """
    with conn.cursor() as cur:
        _create_failures(cur)
        move_failures(cur)  # rows a column mapping could not translate, found while staging
        params = reference_parameters(cur)
    conn.commit()
    text = [s for s in staged if s.kind == PARSE]
    if text:
        outcome = gx_runner.validate(e.name, "raw", text_stage_table(e.name), suite, PARSE)
        with conn.cursor() as cur:
            _collect_failures(cur, e, outcome, f"raw.{text_stage_table(e.name)}", PARSE)
            for s in text:
                name = table_for(s) if table_for else batch_table(e.name, s.batch.batch_id)
                table = _create_batch_table(cur, e, s.batch, name)
                s.typed_rows = _cast_parsed_rows(cur, e, s, table)
                _attach(cur, _stage_ref(e.name), table, s.batch.batch_id)
        conn.commit()
    outcome = gx_runner.validate(e.name, "raw", stage_table(e.name), suite, TYPED, params)
    with conn.cursor() as cur:
        _collect_failures(cur, e, outcome, f"raw.{stage_table(e.name)}", TYPED)
    conn.commit()


def _validate_stage(conn: psycopg2.extensions.connection, gx_runner: GxRunner, e: Entity,
                    suite: dict, staged: list[Staged]) -> None:
    """Validation of an ingest (its own name so the benchmark can time it apart)."""
    validate_staged(conn, gx_runner, e, suite, staged)
