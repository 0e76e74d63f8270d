"""Column mapping: turn a company's own export into the extract contract, on the way in.

A real export rarely looks like the contract: other headers (``Customer Type``), a
required column it does not have, ``Yes``/``No`` for booleans, ``31/01/2026`` dates,
0 meaning "not applicable" on a 1-5 scale, and columns the contract does not name
(cabin class, industry) that are worth segmenting by. ``sources.<source>.mapping.
<entity>`` in cxloop.yml says how to read them (checked before anything loads, in
flows/mapping_config.py); this module rewrites a file that needs it into contract
shape, block by block (memory stays bounded by a block), with the columns the
contract does not name packed into one JSON ``attributes`` column.

A file that already has the contract's columns (and no others) is not touched: it
is COPYed as delivered, so only the files that need a mapping pay for one.

Values the mapping cannot translate (a value not in ``values``, a date that does
not match ``formats``) are kept as delivered, and the row is quarantined with a
reason naming the value, the column and the key to fix; the rest of the file loads.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg2 import sql

from flows.entities import ATTRIBUTES, Entity
from flows.mapping_config import ATTRIBUTE_PREFIX, EntityMapping, mapping_problems

__all__ = ["EntityMapping", "mapping_problems", "needs_rewrite", "rewrite"]

if TYPE_CHECKING:
    import pyarrow as pa

    from flows.extract import Batch

BLOCK_BYTES = 8 << 20  # CSV read per block: the rewrite's memory is a few blocks
PARQUET_ROWS = 100_000


@dataclass
class Output:
    """One column of the rewritten file: where its values come from and how they change."""

    name: str  # contract column, or attributes.<key>
    source: str | None  # header of the delivered file; None for a constant
    constant: str | None = None


@dataclass
class Rewritten:
    """A batch rewritten into contract shape: a UTF-8 CSV to COPY in place of the file."""

    path: Path
    header: list[str]
    failures_path: Path
    failures: int = 0
    rows: int = 0
    _dir: str = field(default="", repr=False)

    def cleanup(self) -> None:
        for p in (self.path, self.failures_path):
            p.unlink(missing_ok=True)
        if self._dir:
            os.rmdir(self._dir)


def needs_rewrite(batch: Batch, header: list[str], e: Entity) -> bool:
    """A mapping applies, or the file has columns the contract does not name."""
    known = set(e.column_names) | {ATTRIBUTES.name}
    return batch.mapping is not None or any(h not in known for h in header)


def plan(batch: Batch, header: list[str], e: Entity) -> list[Output]:
    """The rewritten file's columns, or a StructuralError naming every header problem."""
    from flows.extract import StructuralError

    m = batch.mapping or EntityMapping()
    where = f"sources.{batch.source}.mapping.{e.name}"
    problems = []
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        problems.append(f"repeated column(s) {', '.join(dupes)}")
    absent = [s for s in [*m.rename, *m.drop] if s not in header]
    if absent:
        problems.append(f"column(s) {', '.join(map(repr, absent))} named in {where} "
                        "(rename/drop) not in the file")
    by_name: dict[str, Output] = {}
    for h in header:
        if h in m.drop:
            continue
        name = m.rename.get(h, h)
        if name not in e.column_names:
            if name == ATTRIBUTES.name:
                problems.append(f"column {h!r} is named {ATTRIBUTES.name}, which holds the "
                                f"extra columns; rename it in {where}.rename")
                continue
            if not name.startswith(ATTRIBUTE_PREFIX):
                name = ATTRIBUTE_PREFIX + name
        if name in by_name:
            problems.append(f"columns {by_name[name].source!r} and {h!r} both give {name}")
            continue
        by_name[name] = Output(name, h)
    for col, value in m.constants.items():
        if col in by_name:
            problems.append(f"column {col} is in the file and in {where}.constants; keep one")
        else:
            by_name[col] = Output(col, None, value)
    for c in e.optional_columns:  # left out of the export: null, as for a contract file
        by_name.setdefault(c, Output(c, None, None))
    missing = [c for c in e.column_names if c not in by_name]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}; map a column of the file to "
                        f"each with {where}.rename, or give {where}.constants "
                        "(null for an optional column)")
    unknown = [c for s in ("values", "not_applicable") for c in getattr(m, s)
               if c.startswith(ATTRIBUTE_PREFIX) and c not in by_name]
    if unknown:
        problems.append(f"{', '.join(unknown)} named in {where} not in the file")
    if problems:
        raise StructuralError(f"{batch.path}: line 1: {'; '.join(problems)}")
    outputs = [by_name[c] for c in e.column_names]
    outputs += [o for o in by_name.values() if o.name.startswith(ATTRIBUTE_PREFIX)]
    return outputs


def _blocks(batch: Batch, header: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's rows as blocks of text columns (empty unquoted field = null)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if batch.fmt == "parquet":
        import pyarrow.parquet as pq

        for rb in pq.ParquetFile(batch.path).iter_batches(batch_size=PARQUET_ROWS):
            yield pa.RecordBatch.from_arrays(
                [rb.column(i).cast(pa.string()) for i in range(rb.num_columns)], names=header)
        return
    options = dict(
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=header,
                                       skip_rows=1, encoding=batch.encoding),
        parse_options=pacsv.ParseOptions(delimiter=batch.delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header}, strings_can_be_null=True,
            quoted_strings_can_be_null=False, null_values=[""]),
    )
    with batch.open_binary() as stream:
        try:
            reader = pacsv.open_csv(stream, **options)
        except pa.ArrowInvalid as err:
            if "skip initial" in str(err):  # a header without a newline: no rows
                return
            raise
        yield from reader


def _json_escape(arr: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    arr = pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')
    if pc.any(pc.match_substring_regex(arr, "[\\x00-\\x1f]")).as_py():
        arr = pc.replace_substring(arr, "\x00", "")  # Postgres text holds no NUL
        for code in range(1, 32):
            arr = pc.replace_substring(arr, chr(code), f"\\u{code:04x}")
    return arr


def _attributes(pairs: list[tuple[str, pa.Array]]) -> pa.Array:
    """One JSON object per row, ``{"key": "value" | null, ...}``, built column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts: list[Any] = []
    for i, (key, arr) in enumerate(pairs):
        quoted = pc.binary_join_element_wise(pa.scalar('"'), _json_escape(arr), pa.scalar('"'), "")
        parts += [pa.scalar(("{" if i == 0 else ",") + json.dumps(key) + ":"),
                  pc.if_else(pc.is_null(arr), pa.scalar("null"), quoted)]
    parts.append(pa.scalar("}"))
    return pc.binary_join_element_wise(*parts, "")


class _Failures:
    """Rows the mapping could not translate, written as they are found: (row, rule, reason)."""

    def __init__(self, path: Path):
        self.fh = open(path, "w", newline="", encoding="utf-8")
        self.out = csv.writer(self.fh)
        self.count = 0

    def add(self, first_row: int, arr: pa.Array, bad: pa.Array, rule: str, reason: str) -> None:
        import pyarrow.compute as pc

        idx = pc.indices_nonzero(bad)
        for i, v in zip(idx.to_pylist(), pc.take(arr, idx).to_pylist(), strict=True):
            self.out.writerow([first_row + i, rule, reason.format(value=repr(v))])
            self.count += 1


def _transform(o: Output, arr: pa.Array, m: EntityMapping, e: Entity, where: str,
               first_row: int, failures: _Failures) -> pa.Array:
    """not_applicable, values, formats for one column of one block."""
    import pyarrow as pa
    import pyarrow.compute as pc

    null = pa.scalar(None, pa.string())
    if o.name in m.not_applicable:
        arr = pc.if_else(pc.is_in(arr, value_set=pa.array(m.not_applicable[o.name])), null, arr)
    if o.name in m.values:
        table = m.values[o.name]
        idx = pc.index_in(arr, value_set=pa.array(list(table), pa.string()))
        mapped = pc.take(pa.array(list(table.values()), pa.string()), idx)
        bad = pc.and_(pc.is_valid(arr), pc.is_null(idx))
        failures.add(first_row, arr, bad, f"mapping.values.{o.name}",
                     f"value {{value}} of column {o.name} is not in mapping.values "
                     f"(add it to {where}.values.{o.name})")
        arr = pc.if_else(bad, arr, mapped)
    if o.name in m.formats:
        fmt = m.formats[o.name]
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
        bad = pc.and_(pc.is_valid(arr), pc.is_null(parsed))
        failures.add(first_row, arr, bad, f"mapping.formats.{o.name}",
                     f"value {{value}} of column {o.name} does not match {fmt!r} "
                     f"({where}.formats.{o.name})")
        if e.column(o.name).pg_type == "date":
            parsed = parsed.cast(pa.date32())
        arr = pc.if_else(bad, arr, parsed.cast(pa.string()))
    return arr


def rewrite(batch: Batch, header: list[str], e: Entity) -> Rewritten:
    """The batch in contract shape, as a temporary UTF-8 CSV (caller calls ``cleanup``).

    Raises StructuralError when the header does not fit, or when the file cannot be
    read as CSV in its configured encoding (the message names the file and problem).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from flows.extract import StructuralError

    outputs = plan(batch, header, e)
    m = batch.mapping or EntityMapping()
    where = f"sources.{batch.source}.mapping.{e.name}"
    contract = [o for o in outputs if not o.name.startswith(ATTRIBUTE_PREFIX)]
    extra = [o for o in outputs if o.name.startswith(ATTRIBUTE_PREFIX)]
    out_header = [o.name for o in contract] + ([ATTRIBUTES.name] if extra else [])
    folder = tempfile.mkdtemp(prefix="cxloop-mapping-")
    done = Rewritten(Path(folder) / "rows.csv", out_header, Path(folder) / "failures.csv",
                     _dir=folder)
    failures = _Failures(done.failures_path)
    schema = pa.schema([(n, pa.string()) for n in out_header])
    try:
        with pacsv.CSVWriter(str(done.path), schema) as writer:
            for block in _blocks(batch, header):
                n, first = block.num_rows, done.rows + 1
                cols = []
                for o in contract:
                    arr = (block.column(header.index(o.source)) if o.source is not None
                           else pa.repeat(pa.scalar(o.constant, pa.string()), n))
                    cols.append(_transform(o, arr, m, e, where, first, failures)
                                if o.source is not None else arr)
                if extra:
                    cols.append(_attributes([
                        (o.name.removeprefix(ATTRIBUTE_PREFIX),
                         _transform(o, block.column(header.index(o.source)), m, e, where,
                                    first, failures))
                        for o in extra]))
                writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
                done.rows += n
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError) as err:
        failures.fh.close()
        done.cleanup()
        from flows.readers import safe_message

        msg = safe_message(err)  # pyarrow quotes the offending row: never in a message
        raise StructuralError(f"{batch.path}: cannot read as {batch.encoding} CSV: {msg}; the "
                              "file looks truncated or malformed, or set the source's encoding"
                              ) from None
    except BaseException:
        failures.fh.close()
        done.cleanup()
        raise
    failures.fh.close()
    done.failures = failures.count
    return done


# Quarantined rows a replay may re-validate: not those the mapping could not translate
# (nor rows with a NUL byte, flows/load/stage.py: the delivered value cannot be stored).
# The suite does not know the mapping, so it would pass 'VIP' as a segment; such rows
# stay until the file is loaded again with the mapping fixed (the batch id changes).
REPLAYABLE = sql.SQL("not exists (select 1 from unnest(failed_expectations) as rule "
                     "where rule like 'mapping.%%' or rule = 'nul_byte')")


def record_failures(cur: Any, batch: Batch, done: Rewritten, stage: str) -> None:
    """Keep the rows the mapping could not translate for quarantine, in this session
    (``move_failures`` hands them to the load's failure list after validation starts)."""
    if not done.failures:
        return
    cur.execute("create temp table if not exists _mapping_failures "
                "(batch_id text, row_number bigint, rule text, reason text, stage text)")
    cur.execute("create temp table _mapping_failures_in (row_number bigint, rule text, "
                "reason text)")
    with open(done.failures_path, "rb") as fh:
        cur.copy_expert("copy _mapping_failures_in from stdin with (format csv)", fh)
    cur.execute("insert into _mapping_failures select %s, row_number, rule, reason, %s "
                "from _mapping_failures_in", (batch.batch_id, stage))
    cur.execute("drop table _mapping_failures_in")


def move_failures(cur: Any) -> None:
    """Add this session's mapping failures to ``_failures``: quarantine moves them."""
    cur.execute("select to_regclass('pg_temp._mapping_failures') is not null")
    if cur.fetchone()[0]:
        cur.execute("insert into _failures (batch_id, row_number, rule, reason, stage) "
                    "select * from _mapping_failures")
        cur.execute("drop table _mapping_failures")
