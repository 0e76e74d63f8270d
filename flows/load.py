"""Load: COPY each batch into its own typed table, validate, attach it to ``raw``.

``raw.<entity>`` is partitioned by batch, and a batch's partition is the table
its file was COPYed into: loading writes the rows once, like a bare COPY. Per
entity and run: (1) every new batch is COPYed into a typed table under a stage
parent, each in its own savepoint so a broken file is rejected alone; a file
with values that do not parse (a word in an integer column) goes to a text
stage instead, where the suite's parse rules pick out those rows and the rest
are cast into its typed table; (2) the entity's GX suite runs once over the
stage; (3) each batch then commits in one transaction: failing rows move to
``quarantine.<entity>`` with every rule they broke, the table moves from the
stage to ``raw``, and its ``ops.load_batches`` row is written. A crash leaves a
batch either wholly loaded and recorded or not at all (the next run drops the
stage with whatever it held), and a re-run skips what is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import psycopg2
from psycopg2 import sql

from flows.config import Settings
from flows.corrections import Change, load_order, reinstatable, reinstate, supersede
from flows.entities import ENTITIES, Entity
from flows.extract import Batch, StructuralError, check_columns, read_header
from flows.failpoints import failpoint
from flows.mapping import (
    Rewritten,
    move_failures,
    needs_rewrite,
    record_failures,
    rewrite,
)
from flows.readers import (
    NUL_MARK,
    ChunkStream,
    TrackedStream,
    count_rows,
    parquet_csv_chunks,
    safe_message,
    unreadable_parquet_columns,
)
from flows.rules import store_domain
from flows.validate import (
    PARSE,
    TYPED,
    GxRunner,
    ValidationOutcome,
    load_suite,
    reference_parameters,
    stage_query,
)
from flows.warehouse import LINEAGE_COLUMNS, Warehouse, set_default_zone

log = logging.getLogger(__name__)

STAGE_LINEAGE = ("_batch_id", "_source_file", "_row_number", "_extract_date")
BATCH_SCHEMA = "raw_batches"


@dataclass
class BatchResult:
    """What happened to one batch in this run."""

    batch_id: str
    source: str
    entity: str
    extract_date: date
    source_file: str
    status: str  # loaded | rejected | skipped
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    seconds: float = 0.0
    change: Change | None = None  # set when the batch replaced an earlier delivery
    # Tried again because an earlier attempt rejected it (a rejected batch is never
    # "skipped"): the summary tells these apart from batches skipped as unchanged.
    retried: bool = False


@dataclass
class Staged:
    """A batch on the stage: COPYed typed, or as text because some values did not parse."""

    batch: Batch
    rows_in: int
    kind: str  # TYPED | PARSE
    started: float
    typed_rows: int = 0  # rows in its typed table


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


def _pg_encoding(encoding: str) -> str:
    import codecs

    name = codecs.lookup(encoding).name  # normalise aliases: utf8, UTF-8 -> utf-8
    return {"utf-8": "UTF8", "gb18030": "GB18030", "gbk": "GBK", "latin-1": "LATIN1",
            "iso8859-1": "LATIN1", "cp1252": "WIN1252", "big5": "BIG5"}.get(name, name.upper())


def refresh_reference(wh: Warehouse, settings: Settings) -> None:
    """Check the configured reference files and domain (a ConfigError before anything is
    loaded), then copy the codes and the domain into ``ops`` for the suites."""
    from flows.reference import check_reference

    codes = check_reference(settings)
    specs = [("ref_touchpoints", "touchpoint_code", codes.touchpoints),
             ("ref_survey_items", "item_code", codes.items)]
    with wh.transaction() as cur:
        for table, col, values in specs:
            cur.execute(sql.SQL("create table if not exists ops.{} ({} text primary key)").format(
                sql.Identifier(table), sql.Identifier(col)))
            cur.execute(sql.SQL("truncate ops.{}").format(sql.Identifier(table)))
            cur.executemany(sql.SQL("insert into ops.{} values (%s)").format(
                sql.Identifier(table)), [(c,) for c in values])
        store_domain(cur, settings.domain)
        cur.execute("truncate ops.ref_source_zones")
        cur.executemany("insert into ops.ref_source_zones values (%s, %s)",
                        sorted(settings.source_timezones().items()))
        set_default_zone(cur, settings.timezone)


def known_batches(wh: Warehouse, batch_ids: list[str]) -> set[str]:
    """Batches already dealt with, which a run skips. A rejected batch is not among them:
    its file is tried again on every run, so a fix in cxloop.yml (an encoding, a
    delimiter, a mapping) loads it without re-delivering the file."""
    return {b for b, st in batch_statuses(wh, batch_ids).items() if st != "rejected"}


def batch_statuses(wh: Warehouse, batch_ids: list[str]) -> dict[str, str]:
    """The recorded status of each of these batches that has a record."""
    if not batch_ids:
        return {}
    with wh.transaction() as cur:
        cur.execute("select batch_id, status from ops.load_batches where batch_id = any(%s)",
                    (batch_ids,))
        return dict(cur.fetchall())


def rejected_files(wh: Warehouse, entity: str, paths: list[str]) -> set[str]:
    """Which of these files of ``entity`` have a rejected batch on record."""
    if not paths:
        return set()
    with wh.transaction() as cur:
        cur.execute("select distinct source_file from ops.load_batches where entity = %s "
                    "and status = 'rejected' and source_file = any(%s)", (entity, paths))
        return {r[0] for r in cur.fetchall()}


def _copy_source(batch: Batch, mapped: Rewritten | None = None, replace_nul: bool = False
                 ) -> tuple[TrackedStream, str, str]:
    """A byte stream of CSV for COPY, its Postgres encoding and delimiter.

    The stream keeps any error its source raises (COPY only says "error in .read()").
    Parquet is turned into CSV one record batch at a time: memory stays bounded by
    a batch, as for a CSV file.
    """
    if mapped is not None:  # rewritten into contract shape by flows/mapping.py
        return TrackedStream(open(mapped.path, "rb"), replace_nul), "UTF8", ","
    if batch.fmt == "parquet":
        return (TrackedStream(ChunkStream(parquet_csv_chunks(str(batch.path))), replace_nul),
                "UTF8", ",")
    return (TrackedStream(batch.open_binary(), replace_nul), _pg_encoding(batch.encoding),
            batch.delimiter)


def _read_error_message(batch: Batch, stream: TrackedStream) -> str:
    """A read that failed mid-file: where, and what the reader said (no content)."""
    err = stream.error
    assert err is not None
    hint = ""
    if isinstance(err, EOFError) or "ended before" in str(err):
        hint = "; the file ends early (truncated?), ask the sender to re-deliver it"
    elif isinstance(err, OSError) and batch.fmt == "csv.gz":
        hint = "; not readable as gzip, ask the sender to re-deliver it"
    if batch.fmt == "parquet":  # lines of the CSV it becomes: rows after the header
        return (f"{batch.path}: cannot read: {safe_message(err)} (after row "
                f"{max(stream.lines - 1, 0)})")
    return (f"{batch.path}: line {stream.lines + 1}: cannot read: {safe_message(err)}{hint}"
            f" ({stream.lines} line(s) were readable)")


def file_error(batch: Batch, err: BaseException, stream: TrackedStream | None = None
               ) -> StructuralError | None:
    """The rejection for an error that came from the file, or None when it did not
    (a lost connection, a full disk: the run's problem, not the file's)."""
    import pyarrow as pa

    if isinstance(err, StructuralError):
        return err
    if stream is not None and stream.error is not None:
        return StructuralError(_read_error_message(batch, stream))
    if isinstance(err, psycopg2.DataError):
        return StructuralError(_copy_error_message(batch, err))
    if isinstance(err, (OSError, EOFError, UnicodeError, ValueError, pa.ArrowException)):
        return StructuralError(f"{batch.path}: cannot read: {safe_message(err)}")
    return None


def _copy_error_message(batch: Batch, e: psycopg2.Error) -> str:
    # Postgres names the line in CONTEXT: "COPY _stage_x, line 17, column nps: ..."
    ctx = (e.diag.context or "").strip().splitlines()
    where = ""
    if ctx and ", line " in ctx[0]:
        where = "line " + ctx[0].split(", line ", 1)[1].split(",")[0].split(":")[0] + ": "
    msg = safe_message(psycopg2.Error(e.diag.message_primary or str(e)))
    hint = ""
    if "invalid byte sequence" in msg or "has no equivalent" in msg:
        hint = "; check the source's encoding in cxloop.yml (utf-8 or gb18030)"
    elif "missing data" in msg or "unterminated" in msg or "extra data" in msg:
        hint = "; the file looks truncated or malformed, ask the sender to re-deliver it"
    return f"{batch.path}: {where}{msg}{hint}"


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


def _create_batch_table(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch,
                        name: str, for_copy: bool = False) -> sql.Composed:
    """A typed table for one batch, to become its partition of ``raw``.

    For COPY it starts with the contract's columns and a row counter only; the
    per-batch lineage columns come after the COPY (``add_lineage``), which costs
    nothing per row because Postgres stores a constant default once.
    """
    table = _batch_ref(name)
    # Left by a load whose record was removed (or by an earlier attempt): replaced.
    cur.execute(sql.SQL("drop table if exists {}").format(table))
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    if for_copy:
        cols.append(sql.SQL("_row_number bigint not null default nextval({})").format(
            sql.Literal(_seq(e.name).as_string(cur.connection))))
    else:
        cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                 for n, t in LINEAGE_COLUMNS]
    cur.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(cols)))
    if not for_copy:
        cur.execute(sql.SQL("alter table {} add check (_batch_id = {})").format(
            table, sql.Literal(batch.batch_id)))
    return table


def add_lineage(cur: psycopg2.extensions.cursor, table: sql.Composed, batch: Batch) -> None:
    """The batch's constant lineage as columns with a default, stored once, not per row.
    The CHECK lets each ATTACH PARTITION skip its scan; this is the one scan."""
    b = sql.Literal(batch.batch_id)
    cur.execute(sql.SQL(
        "alter table {t} add column _batch_id text not null default {b}, "
        "add column _source_file text not null default {f}, "
        "add column _extract_date date not null default {d}, "
        "add column _loaded_at timestamptz not null default now(), "
        "add check (_batch_id = {b})"
    ).format(t=table, b=b, f=sql.Literal(str(batch.path)), d=sql.Literal(batch.extract_date)))


def _attach(cur: psycopg2.extensions.cursor, parent: sql.Composed, table: sql.Composed,
            batch_id: str) -> None:
    cur.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        parent, table, sql.Literal(batch_id)))


def _copy(cur: psycopg2.extensions.cursor, batch: Batch, table: sql.Composed,
          header: list[str], mapped: Rewritten | None = None,
          stream: TrackedStream | None = None) -> int:
    """COPY the file into ``table``; ``stream`` (from ``_copy_source``) when the caller
    wants to look at it afterwards (its error, NULs replaced)."""
    if stream is None:
        stream, encoding, delimiter = _copy_source(batch, mapped)
    else:
        encoding, delimiter = _copy_format(batch, mapped)
    copy = sql.SQL(
        "copy {} ({}) from stdin with (format csv, header true, delimiter {}, "
        "encoding {}, null '')"
    ).format(table, sql.SQL(", ").join(map(sql.Identifier, header)), sql.Literal(delimiter),
             sql.Literal(encoding))
    with stream:
        cur.copy_expert(copy.as_string(cur.connection), stream, size=1 << 20)
    return cur.rowcount


def _copy_format(batch: Batch, mapped: Rewritten | None) -> tuple[str, str]:
    if mapped is not None or batch.fmt == "parquet":
        return "UTF8", ","
    return _pg_encoding(batch.encoding), batch.delimiter


def stage_batch(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch) -> tuple[str, int]:
    """COPY one batch onto the stage; returns how it was staged and its row count.

    Typed first: a file whose values all parse is COPYed once, into the table that
    becomes its partition. If a value does not parse the file is COPYed as text
    instead; if that fails too the file is broken and StructuralError says where.
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
        return _stage_file(cur, e, batch, header, None)
    mapped = rewrite(batch, header, e)
    try:
        kind, rows = _stage_file(cur, e, batch, mapped.header, mapped)
        record_failures(cur, batch, mapped, kind)
        return kind, rows
    finally:
        mapped.cleanup()


def _stage_file(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch, header: list[str],
                mapped: Rewritten | None) -> tuple[str, int]:
    """The COPY of a file (or its contract-shaped rewrite): typed, else as text.

    Any error reading, decompressing or parsing the file rolls the savepoint back and
    becomes a StructuralError naming the file, line and problem; a database error
    that is not the file's (a lost connection) goes up unchanged.
    """
    restart = sql.SQL("alter sequence {} restart with 1").format(_seq(e.name))
    cur.execute("savepoint batch")
    stream = None
    try:
        cur.execute(restart)
        table = _create_batch_table(cur, e, batch, batch_table(e.name, batch.batch_id),
                                    for_copy=True)
        stream = _copy_source(batch, mapped)[0]
        rows = _copy(cur, batch, table, header, mapped, stream)
        add_lineage(cur, table, batch)
        _attach(cur, _stage_ref(e.name), table, batch.batch_id)
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
    cur.execute(sql.SQL(
        "alter table raw.{t} alter column _batch_id set default {b}, "
        "alter column _source_file set default {f}, "
        "alter column _extract_date set default {d}, "
        "alter column _row_number set default nextval({s})"
    ).format(t=tt, b=sql.Literal(batch.batch_id), f=sql.Literal(str(batch.path)),
             d=sql.Literal(batch.extract_date),
             s=sql.Literal(_seq(e.name).as_string(cur.connection))))
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


def source_zone(cur: psycopg2.extensions.cursor, source: str) -> None:
    """Read naive timestamps of ``source`` in its configured zone for the rest of this
    transaction (``sources.<src>.timezone``, stored by ``refresh_reference``); a
    timestamp with an offset keeps its instant whatever the zone."""
    cur.execute("select set_config('timezone', coalesce((select timezone from "
                "ops.ref_source_zones where source = %s), current_setting('timezone')), true)",
                (source,))


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


def _detach(cur: psycopg2.extensions.cursor, e: Entity, table: sql.Composed) -> None:
    """Off the stage, without the stage's defaults: what stays is a plain batch table."""
    # Rows keep their stored values; only the defaults for future inserts go.
    cur.execute(sql.SQL("alter table {} alter column _batch_id drop default, "
                        "alter column _source_file drop default, "
                        "alter column _row_number drop default, "
                        "alter column _extract_date drop default").format(table))
    cur.execute(sql.SQL("alter table {} detach partition {}").format(_stage_ref(e.name), table))


def _commit_batch(cur: psycopg2.extensions.cursor, e: Entity, s: Staged,
                  run_id: str) -> BatchResult:
    batch = s.batch
    table = _batch_ref(batch_table(e.name, batch.batch_id))
    quarantined = _quarantine(cur, e, s, table)
    loaded = s.typed_rows
    if loaded + quarantined != s.rows_in:
        raise RuntimeError(f"{batch.path}: {s.rows_in} rows in but {loaded} loaded + "
                           f"{quarantined} quarantined")
    _detach(cur, e, table)
    _attach(cur, sql.SQL("raw.{}").format(sql.Identifier(e.name)), table, batch.batch_id)
    seconds = time.monotonic() - s.started
    _record(cur, batch, "loaded", run_id, s.rows_in, loaded, quarantined, None, seconds)
    # A re-delivery of the entity's day (by the source's rule) replaces the earlier batch:
    # its rows leave raw in this same transaction (flows/corrections.py).
    change = supersede(cur, e, batch, run_id)
    return BatchResult(batch.batch_id, batch.source, batch.entity, batch.extract_date,
                       str(batch.path), "loaded", s.rows_in, loaded, quarantined, None, seconds,
                       change)


def _record(cur: psycopg2.extensions.cursor, batch: Batch, status: str, run_id: str,
            rows_in: int | None, loaded: int | None, quarantined: int | None,
            error: str | None, seconds: float) -> None:
    cur.execute(
        "insert into ops.load_batches (batch_id, source, entity, extract_date, source_file, "
        "content_hash, rows_in, rows_loaded, rows_quarantined, status, error, run_id, "
        "started_at, finished_at, seconds) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, now() - make_interval(secs => %s), now(), %s) on conflict (batch_id) do update "
        # Only a rejected batch is tried again; its record then tells the latest attempt.
        "set rows_in = excluded.rows_in, rows_loaded = excluded.rows_loaded, "
        "rows_quarantined = excluded.rows_quarantined, status = excluded.status, "
        "error = excluded.error, run_id = excluded.run_id, started_at = excluded.started_at, "
        "finished_at = excluded.finished_at, seconds = excluded.seconds "
        "where ops.load_batches.status = 'rejected'",
        (batch.batch_id, batch.source, batch.entity, batch.extract_date, str(batch.path),
         batch.content_hash, rows_in, loaded, quarantined, status, error, run_id, seconds, seconds),
    )


def ingest_entity(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                  run_id: str, on_batch: Callable[[BatchResult], None] | None = None
                  ) -> list[BatchResult]:
    """Stage, validate and load every new batch of one entity; returns one result per batch."""
    e = ENTITIES[entity]
    results: list[BatchResult] = []
    statuses = batch_statuses(wh, [b.batch_id for b in batches])
    known = {b for b, st in statuses.items() if st != "rejected"}
    # Tried again: rejected before, as this batch or as this file read another way
    # (a fixed mapping gives the same file a new batch id).
    was_rejected = rejected_files(wh, entity, [str(b.path) for b in batches])
    retried = {b.batch_id for b in batches if b.batch_id not in known
               and (statuses.get(b.batch_id) == "rejected" or str(b.path) in was_rejected)}
    todo: list[Batch] = []
    seen: set[str] = set()
    again = {b.batch_id for b in _reinstate(wh, e, [b for b in batches if b.batch_id in known],
                                            run_id, results, on_batch)}
    for b in load_order(batches):
        if b.batch_id in again:
            continue
        if b.batch_id in known or b.batch_id in seen:
            results.append(BatchResult(b.batch_id, b.source, b.entity, b.extract_date,
                                       str(b.path), "skipped"))
            if on_batch:
                on_batch(results[-1])
        else:
            seen.add(b.batch_id)
            todo.append(b)
    if not todo:
        return results
    suite = load_suite(entity)
    conn = wh.connect()
    try:
        staged: list[Staged] = []
        with conn.cursor() as cur:
            _create_stage(cur, e)
            for b in todo:
                started = time.monotonic()
                try:
                    kind, rows = stage_batch(cur, e, b)
                    staged.append(Staged(b, rows, kind, started, rows if kind == TYPED else 0))
                except Exception as exc:
                    err = file_error(b, exc)
                    if err is None:
                        raise
                    log.warning("rejected %s", err)
                    rows_in = count_rows(b)
                    _record(cur, b, "rejected", run_id, rows_in, 0, 0, str(err),
                            time.monotonic() - started)
                    r = BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path),
                                    "rejected", rows_in or 0, error=str(err),
                                    retried=b.batch_id in retried)
                    results.append(r)
                    if on_batch:
                        on_batch(r)
        conn.commit()  # GX reads the stage through its own connection
        if not staged:
            return results
        _validate_stage(conn, gx_runner, e, suite, staged)
        for s in staged:
            with conn.cursor() as cur:
                r = _commit_batch(cur, e, s, run_id)
            r.retried = s.batch.batch_id in retried
            conn.commit()  # one transaction per batch
            failpoint("load:after-batch-commit")
            results.append(r)
            if on_batch:
                on_batch(r)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop table {}").format(_stage_ref(entity)))
            cur.execute(sql.SQL("truncate raw.{}").format(
                sql.Identifier(text_stage_table(entity))))
            # Fresh statistics keep dbt's joins over raw on good plans after a load. ONLY
            # (Postgres 18+) samples the parent without re-analysing every partition.
            if conn.server_version >= 180000:
                cur.execute(sql.SQL("analyze only raw.{}").format(sql.Identifier(entity)))
            else:
                for s in staged:
                    cur.execute(sql.SQL("analyze {}").format(
                        _batch_ref(batch_table(entity, s.batch.batch_id))))
        conn.commit()
    finally:
        conn.close()
    return results


def _reinstate(wh: Warehouse, e: Entity, known: list[Batch], run_id: str,
               results: list[BatchResult], on_batch: Callable[[BatchResult], None] | None
               ) -> list[Batch]:
    """Replaced deliveries found again that are current once more (flows/corrections.py),
    one transaction each; their results join ``results``."""
    with wh.transaction() as cur:
        back = reinstatable(cur, known)
    for b in back:
        t0 = time.monotonic()
        with wh.transaction() as cur:
            change = reinstate(cur, e, b, run_id)
            cur.execute("select rows_in, rows_loaded, rows_quarantined from ops.load_batches "
                        "where batch_id = %s", (b.batch_id,))
            rows_in, loaded, quarantined = cur.fetchone()
        results.append(BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path),
                                   "loaded", rows_in or 0, loaded or 0, quarantined or 0, None,
                                   time.monotonic() - t0, change))
        if on_batch:
            on_batch(results[-1])
    return back


def _validate_stage(conn: psycopg2.extensions.connection, gx_runner: GxRunner, e: Entity,
                    suite: dict, staged: list[Staged]) -> None:
    """Validation of an ingest (its own name so the benchmark can time it apart)."""
    validate_staged(conn, gx_runner, e, suite, staged)
