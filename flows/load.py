"""Load: COPY batches into a stage, validate them there, move good rows to ``raw``.

Per entity and run: (1) every new batch is COPYed as text into an unlogged
stage table, each in its own savepoint so a structurally broken file (bad
encoding, truncated line) is rejected alone; (2) the entity's GX suite runs on
the stage; (3) each batch then commits in one transaction: good rows cast into
``raw.<entity>``, failing rows into ``quarantine.<entity>`` with every rule they
broke, and its ``ops.load_batches`` row. A crash leaves a batch either wholly
loaded and recorded or not at all, and a re-run skips what is recorded.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import psycopg2
from psycopg2 import sql

from flows.config import Settings
from flows.entities import ENTITIES, Entity
from flows.extract import Batch, StructuralError, check_columns, read_header
from flows.failpoints import failpoint
from flows.validate import GxRunner, load_suite, stage_query
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

STAGE_LINEAGE = ("_batch_id", "_source_file", "_row_number", "_extract_date")


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


def stage_table(entity: str) -> str:
    return f"_stage_{entity}"


def _pg_encoding(encoding: str) -> str:
    import codecs

    name = codecs.lookup(encoding).name  # normalise aliases: utf8, UTF-8 -> utf-8
    return {"utf-8": "UTF8", "gb18030": "GB18030", "gbk": "GBK", "latin-1": "LATIN1",
            "iso8859-1": "LATIN1", "cp1252": "WIN1252", "big5": "BIG5"}.get(name, name.upper())


def refresh_reference(wh: Warehouse, settings: Settings) -> None:
    """Copy the configured touchpoint catalogue and survey items into ``ops`` for the suites."""
    specs = [
        ("ref_touchpoints", "touchpoint_code", settings.reference.touchpoint_catalogue),
        ("ref_survey_items", "item_code", settings.reference.survey_items),
    ]
    with wh.transaction() as cur:
        for table, col, path in specs:
            try:
                with open(path, newline="", encoding="utf-8") as f:
                    codes = sorted({row[col] for row in csv.DictReader(f)})
            except FileNotFoundError:
                from flows.errors import ConfigError

                raise ConfigError(f"reference file {path} is missing (cxloop.yml: reference)") from None
            except KeyError:
                from flows.errors import ConfigError

                raise ConfigError(f"{path}: line 1: no column {col!r}") from None
            cur.execute(sql.SQL("create table if not exists ops.{} ({} text primary key)").format(
                sql.Identifier(table), sql.Identifier(col)))
            cur.execute(sql.SQL("truncate ops.{}").format(sql.Identifier(table)))
            cur.executemany(sql.SQL("insert into ops.{} values (%s)").format(
                sql.Identifier(table)), [(c,) for c in codes])


def known_batches(wh: Warehouse, batch_ids: list[str]) -> set[str]:
    if not batch_ids:
        return set()
    with wh.transaction() as cur:
        cur.execute("select batch_id from ops.load_batches where batch_id = any(%s)", (batch_ids,))
        return {r[0] for r in cur.fetchall()}


def _create_stage(cur: psycopg2.extensions.cursor, e: Entity) -> None:
    t = sql.Identifier(stage_table(e.name))
    cols = [sql.SQL("{} text").format(sql.Identifier(c)) for c in e.column_names]
    cur.execute(sql.SQL("drop table if exists raw.{}").format(t))
    cur.execute(sql.SQL(
        "create unlogged table raw.{} ({}, _batch_id text, _source_file text, "
        "_row_number bigint, _extract_date date)"
    ).format(t, sql.SQL(", ").join(cols)))
    cur.execute(sql.SQL("drop sequence if exists raw.{}").format(
        sql.Identifier(stage_table(e.name) + "_rows")))
    cur.execute(sql.SQL("create sequence raw.{}").format(
        sql.Identifier(stage_table(e.name) + "_rows")))


def _copy_source(batch: Batch) -> tuple[io.BufferedIOBase, str, str]:
    """A byte stream of CSV for COPY, its Postgres encoding and delimiter."""
    if batch.fmt == "parquet":
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(batch.path)
        table = table.cast(pa.schema([(n, pa.string()) for n in table.column_names]))
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        buf.seek(0)
        return buf, "UTF8", ","
    return batch.open_binary(), _pg_encoding(batch.encoding), batch.delimiter


def _copy_error_message(batch: Batch, e: psycopg2.Error) -> str:
    # Postgres names the line in CONTEXT: "COPY _stage_x, line 17, column nps: ..."
    ctx = (e.diag.context or "").strip().splitlines()
    where = ""
    if ctx and ", line " in ctx[0]:
        where = "line " + ctx[0].split(", line ", 1)[1].split(",")[0].split(":")[0] + ": "
    msg = (e.diag.message_primary or str(e)).strip()
    hint = ""
    if "invalid byte sequence" in msg or "has no equivalent" in msg:
        hint = "; check the source's encoding in cxloop.yml (utf-8 or gb18030)"
    elif "missing data" in msg or "unterminated" in msg or "extra data" in msg:
        hint = "; the file looks truncated or malformed, ask the sender to re-deliver it"
    return f"{batch.path}: {where}{msg}{hint}"


def stage_batch(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch) -> int:
    """COPY one batch into the stage; raises StructuralError for a file-level problem."""
    header = read_header(batch)
    check_columns(batch, header, e)
    t = sql.Identifier(stage_table(e.name))
    seq = sql.Identifier(stage_table(e.name) + "_rows")
    # Lineage values ride on column defaults so COPY stays the only pass over the data.
    cur.execute(sql.SQL("alter sequence raw.{} restart with 1").format(seq))
    cur.execute(sql.SQL(
        "alter table raw.{t} alter column _batch_id set default {b}, "
        "alter column _source_file set default {f}, "
        "alter column _extract_date set default {d}, "
        "alter column _row_number set default nextval({s})"
    ).format(t=t, b=sql.Literal(batch.batch_id), f=sql.Literal(str(batch.path)),
             d=sql.Literal(batch.extract_date), s=sql.Literal(f"raw.{stage_table(e.name)}_rows")))
    stream, encoding, delimiter = _copy_source(batch)
    copy = sql.SQL(
        "copy raw.{} ({}) from stdin with (format csv, header true, delimiter {}, "
        "encoding {}, null '')"
    ).format(t, sql.SQL(", ").join(map(sql.Identifier, header)), sql.Literal(delimiter),
             sql.Literal(encoding))
    cur.execute("savepoint batch")
    try:
        with stream:
            cur.copy_expert(copy.as_string(cur.connection), stream, size=1 << 20)
    except (psycopg2.DataError, psycopg2.errors.BadCopyFileFormat,
            psycopg2.errors.CharacterNotInRepertoire, psycopg2.errors.UntranslatableCharacter) as err:
        cur.execute("rollback to savepoint batch")
        raise StructuralError(_copy_error_message(batch, err)) from None
    except (OSError, EOFError) as err:  # a corrupt gzip stream
        cur.execute("rollback to savepoint batch")
        raise StructuralError(f"{batch.path}: cannot read: {err}") from None
    rows = cur.rowcount
    cur.execute("release savepoint batch")
    # A header-only file is a valid "nothing changed today" extract: a batch of 0 rows.
    return rows


def _collect_failures(cur: psycopg2.extensions.cursor, e: Entity, rules: dict[str, str],
                      queries: dict[str, str], observed: dict[str, int]) -> None:
    """Materialise (batch, row, rule) for each failed rule, from the suite's own SQL."""
    cur.execute("drop table if exists pg_temp._failures")
    cur.execute("create temp table _failures (batch_id text, row_number bigint, rule text, "
                "reason text)")
    stage = f"raw.{stage_table(e.name)}"
    for rule, query in queries.items():
        cur.execute(
            sql.SQL("insert into _failures select _batch_id, _row_number, {r}, {d} from ({q}) bad")
            .format(r=sql.Literal(rule), d=sql.Literal(rules[rule]),
                    q=sql.SQL(stage_query(query, stage)))
        )
        if cur.rowcount != observed.get(rule, cur.rowcount):
            raise RuntimeError(f"{e.name}.{rule}: GX counted {observed[rule]} bad rows, "
                               f"the quarantine query {cur.rowcount}")
    cur.execute("create index on _failures (batch_id, row_number)")
    cur.execute("analyze _failures")


def _split_batch(cur: psycopg2.extensions.cursor, e: Entity, batch_id: str) -> tuple[int, int]:
    """Staged rows of a batch: passing ones cast into raw, failing ones into quarantine."""
    stage = sql.SQL("raw.{}").format(sql.Identifier(stage_table(e.name)))
    casts = sql.SQL(", ").join(
        sql.SQL("s.{c}::{t}").format(c=sql.Identifier(c.name), t=sql.SQL(c.pg_type))
        for c in e.columns
    )
    cols = sql.SQL(", ").join(map(sql.Identifier, e.column_names + list(STAGE_LINEAGE)))
    cur.execute(sql.SQL(
        "insert into raw.{t} ({cols}) select {casts}, s._batch_id, s._source_file, "
        "s._row_number, s._extract_date from {stage} s where s._batch_id = %(b)s "
        "and not exists (select 1 from _failures f where f.batch_id = s._batch_id "
        "and f.row_number = s._row_number)"
    ).format(t=sql.Identifier(e.name), cols=cols, casts=casts, stage=stage), {"b": batch_id})
    loaded = cur.rowcount
    cur.execute("select exists (select 1 from _failures where batch_id = %s)", (batch_id,))
    if not cur.fetchone()[0]:
        return loaded, 0
    cur.execute(sql.SQL(
        "insert into quarantine.{t} (_batch_id, _source_file, _row_number, _extract_date, "
        "raw_values, failed_expectations, reasons) "
        "select s._batch_id, s._source_file, s._row_number, s._extract_date, "
        "to_jsonb(s) - '_batch_id' - '_source_file' - '_row_number' - '_extract_date', "
        "f.rules, f.reasons from {stage} s join ("
        "  select batch_id, row_number, array_agg(rule order by rule) as rules, "
        "         string_agg(reason, '; ' order by rule) as reasons "
        "  from _failures where batch_id = %(b)s group by 1, 2) f "
        "on f.batch_id = s._batch_id and f.row_number = s._row_number"
    ).format(t=sql.Identifier(e.name), stage=stage), {"b": batch_id})
    return loaded, cur.rowcount


def _commit_batch(cur: psycopg2.extensions.cursor, e: Entity, batch: Batch, rows_in: int,
                  run_id: str, started: float) -> BatchResult:
    loaded, quarantined = _split_batch(cur, e, batch.batch_id)
    if loaded + quarantined != rows_in:
        raise RuntimeError(f"{batch.path}: {rows_in} rows in but {loaded} loaded + "
                           f"{quarantined} quarantined")
    seconds = time.monotonic() - started
    _record(cur, batch, "loaded", run_id, rows_in, loaded, quarantined, None, seconds)
    # A re-delivered file (same name, same date, new content) supersedes the earlier one.
    cur.execute(
        "update ops.load_batches set status = 'superseded' where source = %s and entity = %s "
        "and extract_date = %s and source_file = %s and batch_id <> %s and status = 'loaded'",
        (batch.source, batch.entity, batch.extract_date, str(batch.path), batch.batch_id),
    )
    return BatchResult(batch.batch_id, batch.source, batch.entity, batch.extract_date,
                       str(batch.path), "loaded", rows_in, loaded, quarantined, None, seconds)


def _record(cur: psycopg2.extensions.cursor, batch: Batch, status: str, run_id: str,
            rows_in: int | None, loaded: int | None, quarantined: int | None,
            error: str | None, seconds: float) -> None:
    cur.execute(
        "insert into ops.load_batches (batch_id, source, entity, extract_date, source_file, "
        "content_hash, rows_in, rows_loaded, rows_quarantined, status, error, run_id, "
        "started_at, finished_at, seconds) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, now() - make_interval(secs => %s), now(), %s) on conflict (batch_id) do nothing",
        (batch.batch_id, batch.source, batch.entity, batch.extract_date, str(batch.path),
         batch.content_hash, rows_in, loaded, quarantined, status, error, run_id, seconds, seconds),
    )


def _validate_stage(conn: psycopg2.extensions.connection, gx_runner: GxRunner, e: Entity,
                    suite: dict) -> None:
    """Run the suite on the committed stage and materialise the failing rows."""
    outcome = gx_runner.validate(e.name, "raw", stage_table(e.name), suite)
    if outcome.batch_failures:
        raise RuntimeError(f"{e.name}: stage failed table checks: {outcome.batch_failures}")
    with conn.cursor() as cur:
        _collect_failures(cur, e, outcome.failed_rules, outcome.failed_queries, outcome.observed)
    conn.commit()


def replay_quarantine(wh: Warehouse, gx_runner: GxRunner, batch_id: str) -> tuple[int, int]:
    """Re-validate a batch's quarantined rows with today's suite and reference data.

    Rows that pass now move to ``raw`` (keeping their original lineage); the rest
    stay quarantined with refreshed reasons. Returns (moved to raw, still quarantined).
    """
    with wh.transaction() as cur:
        cur.execute("select entity, status from ops.load_batches where batch_id = %s",
                    (batch_id,))
        row = cur.fetchone()
    if row is None:
        from flows.errors import CxloopError

        raise CxloopError(f"no batch {batch_id!r} in ops.load_batches (see `cxloop batches`)")
    entity, status = row
    if status != "loaded":
        from flows.errors import CxloopError

        raise CxloopError(f"batch {batch_id} is {status}: only loaded batches have quarantined "
                          "rows to replay; a rejected file must be re-delivered")
    e = ENTITIES[entity]
    suite = load_suite(entity)
    conn = wh.connect()
    try:
        with conn.cursor() as cur:
            _create_stage(cur, e)
            cols = sql.SQL(", ").join(map(sql.Identifier, e.column_names + list(STAGE_LINEAGE)))
            values = sql.SQL(", ").join(
                sql.SQL("raw_values ->> {}").format(sql.Literal(c)) for c in e.column_names)
            cur.execute(sql.SQL(
                "insert into raw.{st} ({cols}) select {values}, _batch_id, _source_file, "
                "_row_number, _extract_date from quarantine.{t} where _batch_id = %s"
            ).format(st=sql.Identifier(stage_table(entity)), cols=cols, values=values,
                     t=sql.Identifier(entity)), (batch_id,))
        conn.commit()
        _validate_stage(conn, gx_runner, e, suite)
        with conn.cursor() as cur:  # one transaction: move, re-quarantine, recount
            cur.execute(sql.SQL("delete from quarantine.{} where _batch_id = %s").format(
                sql.Identifier(entity)), (batch_id,))
            moved, kept = _split_batch(cur, e, batch_id)
            cur.execute("update ops.load_batches set rows_loaded = rows_loaded + %s, "
                        "rows_quarantined = %s where batch_id = %s", (moved, kept, batch_id))
            cur.execute(sql.SQL("truncate raw.{}").format(sql.Identifier(stage_table(entity))))
        conn.commit()
    finally:
        conn.close()
    return moved, kept


def ingest_entity(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                  run_id: str, on_batch: Callable[[BatchResult], None] | None = None
                  ) -> list[BatchResult]:
    """Stage, validate and load every new batch of one entity; returns one result per batch."""
    e = ENTITIES[entity]
    results: list[BatchResult] = []
    known = known_batches(wh, [b.batch_id for b in batches])
    todo: list[Batch] = []
    seen: set[str] = set()
    for b in batches:
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
        staged: list[tuple[Batch, int, float]] = []
        with conn.cursor() as cur:
            _create_stage(cur, e)
            for b in todo:
                started = time.monotonic()
                try:
                    rows = stage_batch(cur, e, b)
                    staged.append((b, rows, started))
                except StructuralError as err:
                    log.warning("rejected %s", err)
                    _record(cur, b, "rejected", run_id, None, None, None, str(err),
                            time.monotonic() - started)
                    r = BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path),
                                    "rejected", error=str(err))
                    results.append(r)
                    if on_batch:
                        on_batch(r)
            # Each batch is moved by its own statement: find its rows without a full scan.
            cur.execute(sql.SQL("create index on raw.{} (_batch_id)").format(
                sql.Identifier(stage_table(entity))))
            cur.execute(sql.SQL("analyze raw.{}").format(sql.Identifier(stage_table(entity))))
        conn.commit()  # GX reads the stage through its own connection
        if not staged:
            return results
        _validate_stage(conn, gx_runner, e, suite)
        for b, rows, started in staged:
            with conn.cursor() as cur:
                r = _commit_batch(cur, e, b, rows, run_id, started)
            conn.commit()  # one transaction per batch
            failpoint("load:after-batch-commit")
            results.append(r)
            if on_batch:
                on_batch(r)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("truncate raw.{}").format(sql.Identifier(stage_table(entity))))
            # Fresh statistics keep dbt's joins over raw on good plans after a big load.
            cur.execute(sql.SQL("analyze raw.{}").format(sql.Identifier(entity)))
        conn.commit()
    finally:
        conn.close()
    return results
