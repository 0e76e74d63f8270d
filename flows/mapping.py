"""Column mapping: turn a company's own export into the extract contract, on the way in.

A real export rarely looks like the contract: other headers (``Customer Type``), a
required column it does not have, ``Yes``/``No`` for booleans, ``31/01/2026`` dates,
0 meaning "not applicable" on a 1-5 scale, and columns the contract does not name
(cabin class, industry) that are worth segmenting by. ``sources.<source>.mapping.
<entity>`` in cxloop.yml says how to read them; this module checks that
configuration before anything loads, and rewrites a file that needs it into
contract shape, block by block (memory stays bounded by a block), with the columns
the contract does not name packed into one JSON ``attributes`` column.

A file that already has the contract's columns (and no others) is not touched: it
is COPYed as delivered, so only the files that need a mapping pay for one.

Values the mapping cannot translate (a value not in ``values``, a date that does
not match ``formats``) are kept as delivered, and the row is quarantined with a
reason naming the value, the column and the key to fix; the rest of the file loads.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg2 import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.entities import ATTRIBUTES, ENTITIES, Entity

if TYPE_CHECKING:
    import pyarrow as pa

    from flows.extract import Batch

ATTRIBUTE_PREFIX = ATTRIBUTES.name + "."
BLOCK_BYTES = 8 << 20  # CSV read per block: the rewrite's memory is a few blocks
PARQUET_ROWS = 100_000
_YAML_BOOLEAN = ("is a YAML boolean (unquoted yes/no/on/off/true/false): quote it, "
                 "e.g. 'Yes': true")


def _text(v: Any, what: str) -> str | None:
    """A configured value as the text it is compared with or written as."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | str):
        return str(v)
    raise ValueError(f"{what} {v!r} is not a single value")


def _key(k: Any, what: str) -> str:
    """A configured key (a header or a delivered value) as text; YAML booleans refused,
    because ``Yes:`` and ``true:`` both arrive as True and the file holds one of them."""
    if isinstance(k, bool):
        raise ValueError(f"{what} {k!r} {_YAML_BOOLEAN}")
    out = _text(k, what)
    if out is None:
        raise ValueError(f"{what} is empty (null)")
    return out


class EntityMapping(BaseModel):
    """How one source's export of one entity maps onto the contract (all keys optional).

    Keys of ``values``, ``formats`` and ``not_applicable`` are contract columns (after
    ``rename``) or ``attributes.<key>``. Steps per value: not_applicable, then values,
    then formats.
    """

    model_config = ConfigDict(extra="forbid")

    rename: dict[str, str] = Field(default_factory=dict)  # source header -> contract column
    constants: dict[str, str | None] = Field(default_factory=dict)  # column the export lacks
    values: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    formats: dict[str, str] = Field(default_factory=dict)  # strptime, date/timestamp columns
    not_applicable: dict[str, list[str]] = Field(default_factory=dict)  # these become null
    drop: list[str] = Field(default_factory=list)  # source columns left out (personal data)

    @field_validator("rename", mode="before")
    @classmethod
    def _rename(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_key(k, "source column"): _key(t, f"target of {k!r}") for k, t in v.items()}

    @field_validator("constants", mode="before")
    @classmethod
    def _constants(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_key(k, "column"): _text(x, f"constant of {k!r}") for k, x in v.items()}

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for col, table in v.items():
            if not isinstance(table, dict) or not table:
                raise ValueError(f"{col}: expected a map of delivered value -> contract value, "
                                 f"got {table!r}")
            out[_key(col, "column")] = {_key(k, f"{col}: value"): _text(x, f"{col}: {k!r} ->")
                                        for k, x in table.items()}
        return out

    @field_validator("not_applicable", mode="before")
    @classmethod
    def _not_applicable(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for col, items in v.items():
            items = items if isinstance(items, list) else [items]
            out[_key(col, "column")] = [_key(x, f"{col}: value") for x in items]
        return out

    @field_validator("drop", mode="before")
    @classmethod
    def _drop(cls, v: Any) -> Any:
        return [_key(x, "column") for x in v] if isinstance(v, list) else v

    def fingerprint(self) -> str:
        """Part of a mapped batch's identity: a changed mapping reloads the file."""
        dumped = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(dumped.encode()).hexdigest()[:16]


def _check_value(pg_type: str, v: str) -> bool:
    """Would Postgres accept ``v`` for ``pg_type``? For the types a value map targets."""
    base = pg_type.split("(")[0]
    try:
        if base == "integer":
            int(v)
        elif base == "numeric":
            float(v)
        elif base == "boolean":
            return v.strip().lower() in ("true", "false", "t", "f", "yes", "no", "y", "n",
                                         "on", "off", "1", "0")
    except ValueError:
        return False
    return True


def entity_mapping_problems(e: Entity, m: EntityMapping, where: str) -> list[str]:
    """What is wrong with one entity's mapping, each naming its key and value."""
    problems: list[str] = []
    cols = {c.name: c for c in e.columns}
    listing = ", ".join(cols)

    def target_ok(name: str, key: str, attributes_ok: bool = True) -> bool:
        if name in cols or (attributes_ok and name.startswith(ATTRIBUTE_PREFIX)
                            and len(name) > len(ATTRIBUTE_PREFIX)):
            return True
        extra = f" or {ATTRIBUTE_PREFIX}<key>" if attributes_ok else ""
        problems.append(f"{where}.{key}: {name!r} is not a column of {e.name} "
                        f"(columns: {listing}{extra})")
        return False

    targets: dict[str, str] = {}
    for src, tgt in m.rename.items():
        if target_ok(tgt, f"rename.{src}"):
            if tgt in targets:
                problems.append(f"{where}.rename: {targets[tgt]!r} and {src!r} both rename to "
                                f"{tgt!r}; a contract column comes from one source column")
            targets[tgt] = src
        if src in m.drop:
            problems.append(f"{where}.drop: {src!r} is also renamed (rename.{src})")
    for col in m.constants:
        if target_ok(col, f"constants.{col}", attributes_ok=False) and col in targets:
            problems.append(f"{where}.constants.{col}: {col!r} also comes from column "
                            f"{targets[col]!r} (rename); keep one")
    for section in ("values", "not_applicable", "formats"):
        for col in getattr(m, section):
            key = f"{section}.{col}"
            if target_ok(col, key, attributes_ok=section != "formats") and col in m.constants:
                problems.append(f"{where}.{key}: {col!r} is a constant; give the constant "
                                "its final value instead")
    for col, table in m.values.items():
        if col in cols:
            for k, v in table.items():
                if v is not None and not _check_value(cols[col].pg_type, v):
                    problems.append(f"{where}.values.{col}.{k}: {v!r} is not a valid "
                                    f"{cols[col].pg_type} for column {col}")
    for col, fmt in m.formats.items():
        if col in cols and cols[col].pg_type not in ("date", "timestamp"):
            problems.append(f"{where}.formats.{col}: {col} is a {cols[col].pg_type} column; "
                            "formats apply to date and timestamp columns")
        elif "%" not in fmt:
            problems.append(f"{where}.formats.{col}: {fmt!r} has no strptime directive "
                            "(e.g. %d/%m/%Y)")
    return problems


def mapping_problems(sources: dict[str, Any]) -> list[str]:
    """Every problem of every configured mapping: cxloop.yml is refused before loading."""
    problems = []
    for name, src in sorted(sources.items()):
        queries = getattr(src, "queries", None)
        for ent, m in sorted(getattr(src, "mapping", {}).items()):
            where = f"sources.{name}.mapping.{ent}"
            if ent not in ENTITIES:
                problems.append(f"{where}: unknown entity {ent!r} "
                                f"(known: {', '.join(ENTITIES)})")
                continue
            if queries is not None and ent not in queries:
                problems.append(f"{where}: source {name!r} has no query for {ent!r} "
                                f"(queries: {', '.join(queries) or 'none'})")
            elif queries is None and ENTITIES[ent].source != name:
                problems.append(f"{where}: {ent} files come from source "
                                f"{ENTITIES[ent].source!r}, not {name!r}")
            problems += entity_mapping_problems(ENTITIES[ent], m, where)
    return problems


# --- rewriting a file ---------------------------------------------------------------

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
    with batch.open_binary() as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=header,
                                           skip_rows=1, encoding=batch.encoding),
            parse_options=pacsv.ParseOptions(delimiter=batch.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True,
                quoted_strings_can_be_null=False, null_values=[""]),
        )
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
        msg = str(err).strip().splitlines()[0]
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


# Quarantined rows a replay may re-validate: not those the mapping could not translate.
# The suite does not know the mapping, so it would pass 'VIP' as a segment; such rows
# stay until the file is loaded again with the mapping fixed (the batch id changes).
REPLAYABLE = sql.SQL("not exists (select 1 from unnest(failed_expectations) as rule "
                     "where rule like 'mapping.%%')")


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
