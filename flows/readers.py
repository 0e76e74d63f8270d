"""Byte streams of extract files for COPY, and what a broken file is made of.

COPY reads a file through ``read()``; when that read fails (a truncated gzip, a
Parquet column that cannot become text) psycopg2 reports only "error in .read()
call". ``TrackedStream`` keeps the real error and how many lines went through, so
the rejection can say which file, after which line, and why. Parquet is streamed
record batch by record batch into CSV text, so memory stays bounded by one batch
(as for CSV files) instead of holding the whole table twice.

Nothing here ever puts file content into a message: only names, line numbers,
types and the library's description of the problem.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from flows.extract import Batch

PARQUET_BATCH_ROWS = 16_384  # rows per record batch: with the reader's buffers, its memory
# What replaces a NUL byte on the text stage: PostgreSQL text cannot hold NUL, and SUB
# ("substitute", 0x1A) is one byte in every ASCII-compatible encoding, like NUL.
NUL, NUL_MARK = b"\x00", b"\x1a"


class TrackedStream(io.RawIOBase):
    """A read-only stream that remembers the error its source raised and counts lines.

    With ``replace_nul`` every NUL byte becomes ``NUL_MARK`` (counted in ``nuls``), so
    the rows holding one can be quarantined instead of the whole file failing.
    """

    def __init__(self, inner: io.BufferedIOBase | io.RawIOBase, replace_nul: bool = False):
        super().__init__()
        self.inner = inner
        self.replace_nul = replace_nul
        self.error: BaseException | None = None
        self.lines = 0  # newlines delivered so far: line N+1 was being read on failure
        self.nuls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.inner.read(size)
        except Exception as e:
            self.error = e
            raise
        if data:
            self.lines += data.count(b"\n")
            if self.replace_nul and NUL in data:
                self.nuls += data.count(NUL)
                data = data.replace(NUL, NUL_MARK)
        return data

    def readinto(self, b: bytearray) -> int:  # pragma: no cover - COPY calls read()
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            super().close()


class ChunkStream(io.RawIOBase):
    """A stream over an iterator of byte chunks (one CSV block per record batch)."""

    def __init__(self, chunks: Iterator[bytes]):
        super().__init__()
        self.chunks = chunks
        self.buf = bytearray()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buf) - self.pos < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            if self.pos:  # drop what was read before growing: at most about two chunks held
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk
        end = len(self.buf) if size < 0 else min(len(self.buf), self.pos + size)
        out = bytes(self.buf[self.pos:end])
        self.pos = end
        return out


def unreadable_parquet_columns(schema: pa.Schema) -> list[str]:
    """Columns whose Parquet type has no text form a CSV field could hold (lists,
    structs, maps, unions): ``name (type)`` each."""
    import pyarrow.types as t

    bad = []
    for field in schema:
        typ = field.type
        if t.is_dictionary(typ):
            typ = typ.value_type
        if t.is_nested(typ) or t.is_union(typ):
            bad.append(f"{field.name} ({typ})")
    return bad


def parquet_as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Parquet column as text, the way the CSV path delivers it to COPY."""
    import pyarrow as pa

    return column.cast(pa.string())


def _system_pool() -> None:
    """Arrow allocates from malloc here: its default (mimalloc) keeps freed arenas, which
    for a streamed file doubled the reader's resident memory (measured: +43 against
    +21 MB over a 100k-row file in 8k-row batches)."""
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def parquet_csv_chunks(path: str, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[bytes]:
    """The file as CSV text (header first), one record batch at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    _system_pool()
    # buffer_size: column chunks are read in pieces, not whole row groups at once.
    pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    names = pf.schema_arrow.names
    first = True
    for rb in pf.iter_batches(batch_size=batch_rows, use_threads=False):
        text = pa.RecordBatch.from_arrays([parquet_as_text(c) for c in rb.columns], names=names)
        buf = io.BytesIO()
        pacsv.write_csv(text, buf, pacsv.WriteOptions(include_header=first))
        first = False
        yield buf.getvalue()
    if first:  # no rows: still a header
        buf = io.BytesIO()
        pacsv.write_csv(pa.table({n: pa.array([], pa.string()) for n in names}), buf)
        yield buf.getvalue()
    pf.close()


def count_rows(batch: Batch) -> int | None:
    """Data rows (records after the header) a file holds, for a rejected batch's record.

    A truncated file counts the rows readable before the cut; None when nothing can
    be counted (a Parquet file without its footer). CSV records are counted as bytes
    read as latin-1: delimiters, quotes and newlines are ASCII in every encoding the
    loader supports, so a file in the wrong encoding still counts right.
    """
    if batch.fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.read_metadata(batch.path).num_rows)
        except Exception:
            return None
    records = 0
    try:
        with batch.open_binary() as raw:
            text = io.TextIOWrapper(raw, encoding="latin-1", newline="")  # type: ignore[arg-type]
            for _ in csv.reader(text, delimiter=batch.delimiter):
                records += 1
    except (OSError, EOFError, csv.Error, ValueError):
        pass  # what was readable counts
    return max(records - 1, 0)


_CONTENT_AFTER = (
    re.compile(r"(Expected \d+ columns?, got \d+)(: .*)?$"),  # pyarrow CSV: the row follows
    re.compile(r"(invalid input syntax for type [\w ]+)(: .*)?$"),
)


def safe_message(err: BaseException) -> str:
    """The first line of an error's message without any file content it quotes."""
    msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
    for pat in _CONTENT_AFTER:
        msg = pat.sub(r"\1", msg)
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return msg
