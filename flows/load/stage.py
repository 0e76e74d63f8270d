"""Staging: one file COPYed into its batch table on the stage, typed or else as text.

A file is COPYed once, into the table that becomes its partition of ``raw``, in its
own savepoint so a broken file is rejected alone. A file with values that do not parse
goes to the text stage instead, where the suite's parse rules pick out those rows.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from flows.entities import Entity
from flows.extract import Batch, StructuralError, check_columns, read_header
from flows.load.copying import _copy, _copy_source, file_error
from flows.load.tables import (
    _seq,
    lineage_defaults,
    set_lineage,
    source_zone,
    text_stage_table,
)
from flows.mapping import Rewritten, needs_rewrite, record_failures, rewrite
from flows.readers import NUL_MARK, unreadable_parquet_columns
from flows.validate import PARSE, TYPED


def stage_batch(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
                table: sql.Composed) -> tuple[str, int]:
    """COPY one batch onto the stage; returns how it was staged and its row count.

    Typed first: a file whose values all parse is COPYed once, into ``table`` (its
    month's group table, which becomes a partition of ``raw``). If a value does not
    parse the file is COPYed as text instead; if that fails too the file is broken and
    StructuralError says where.
    """
    source_zone(cur, batch.source)  # COPY parses naive timestamps in the session's zone
    header = read_header(batch)
    if batch.fmt == "parquet":
        import pyarrow.parquet as pq

        bad = unreadable_parquet_columns(pq.read_schema(batch.path))
        if bad:
            raise StructuralError(
                f"{batch.path}: column(s) {', '.join(bad)} have no text form (lists, "
                "structs and maps cannot load into a column); export them as plain values")
    if batch.mapping is None:
        check_columns(batch, header, e)
    if not needs_rewrite(batch, header, e):  # contract-shaped: COPYed as delivered
        return _stage_file(cur, e, batch, header, None, table)
    mapped = rewrite(batch, header, e)
    try:
        kind, rows = _stage_file(cur, e, batch, mapped.header, mapped, table)
        record_failures(cur, batch, mapped, kind)
        return kind, rows
    finally:
        mapped.cleanup()


def _stage_file(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch, header: list[str],
                mapped: Rewritten | None, table: sql.Composed) -> tuple[str, int]:
    """The COPY of a file (or its contract-shaped rewrite): typed, else as text.

    Any error reading, decompressing or parsing the file rolls the savepoint back and
    becomes a StructuralError naming the file, line and problem; a database error
    that is not the file's (a lost connection) goes up unchanged.
    """
    restart = sql.SQL("alter sequence {} restart with 1").format(_seq(e.name))
    set_lineage(cur, e, batch, table)  # and "savepoint batch"
    stream = None
    try:
        stream = _copy_source(batch, mapped)[0]
        rows = _copy(cur, batch, table, header, mapped, stream)
        cur.execute("release savepoint batch")
        return TYPED, rows
    except Exception as err:
        cur.execute("rollback to savepoint batch")
        # A value that does not parse as its type: staged as text below. Anything else
        # from the file rejects it.
        if not (isinstance(err, psycopg2.DataError) and (stream is None or stream.error is None)):
            rejection = file_error(batch, err, stream)
            if rejection is None:
                raise
            raise rejection from None
    tt = sql.Identifier(text_stage_table(e.name))
    cur.execute(restart)
    # Lineage values ride on column defaults here too.
    cur.execute(lineage_defaults(
        sql.SQL("raw.{}").format(tt), batch,
        sql.SQL("alter column _row_number set default nextval({})").format(
            sql.Literal(_seq(e.name).as_string(cur.connection)))))
    # NUL bytes (which text cannot hold) are marked, and their rows quarantined.
    stream = _copy_source(batch, mapped, replace_nul=True)[0]
    try:
        rows = _copy(cur, batch, sql.SQL("raw.{}").format(tt), header, mapped, stream)
    except Exception as err:  # bad format, encoding or line: the file is broken
        cur.execute("rollback to savepoint batch")
        rejection = file_error(batch, err, stream)
        if rejection is None:
            raise
        raise rejection from None
    if stream.nuls:
        _flag_nul_rows(cur, e, batch)
    cur.execute("release savepoint batch")
    # A header-only file is a valid "nothing changed today" extract: a batch of 0 rows.
    return PARSE, rows


NUL_RULE = "nul_byte"


def _flag_nul_rows(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch) -> None:
    """Rows with a NUL byte go to quarantine with the columns that held one; the rest of
    the file loads. They ride with the mapping's failures (``move_failures``)."""
    mark = NUL_MARK.decode("ascii")
    hit = [sql.SQL("case when strpos({c}, {m}) > 0 then {n} end").format(
        c=sql.Identifier(c), m=sql.Literal(mark), n=sql.Literal(c)) for c in e.raw_column_names]
    cur.execute("create temp table if not exists _mapping_failures "
                "(batch_id text, row_number bigint, rule text, reason text, stage text)")
    cur.execute(sql.SQL(
        "insert into _mapping_failures select _batch_id, _row_number, {rule}, "
        "'NUL byte (0x00) in column(s) ' || concat_ws(', ', {hit}) || ', which a text column "
        "cannot hold (shown as U+001A); ask the sender to re-deliver the row without it', {st} "
        "from raw.{t} where _batch_id = %s and concat_ws(', ', {hit}) <> ''"
    ).format(rule=sql.Literal(NUL_RULE), hit=sql.SQL(", ").join(hit), st=sql.Literal(PARSE),
             t=sql.Identifier(text_stage_table(e.name))), (batch.batch_id,))
