"""COPY of a file into a table, and the rejection that a file's own errors become.

CSV, gzip and Parquet files (and a column mapping's rewrite) all reach Postgres as a
CSV byte stream. This module builds that stream and the COPY, and turns what went
wrong reading it into a StructuralError naming the file, line and problem, while an
error that is not the file's (a lost connection, a full disk) goes up unchanged.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from flows.extract import Batch, StructuralError
from flows.mapping import Rewritten
from flows.readers import ChunkStream, TrackedStream, parquet_csv_chunks, safe_message


def _pg_encoding(encoding: str) -> str:
    import codecs

    name = codecs.lookup(encoding).name  # normalise aliases: utf8, UTF-8 -> utf-8
    return {"utf-8": "UTF8", "gb18030": "GB18030", "gbk": "GBK", "latin-1": "LATIN1",
            "iso8859-1": "LATIN1", "cp1252": "WIN1252", "big5": "BIG5"}.get(name, name.upper())


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
