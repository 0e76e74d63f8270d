"""Writing extract files: RFC-4180 CSV via Arrow, or Parquet.

Why this exists: the CSV writer quotes only where needed and writes in chunks so a file
holding the whole base (day 1) does not need its text in memory at once; one function
decides the format so every entity and the utility profile write the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

NEEDS_QUOTE = r'[",\r\n]'


def _csv_quote(col: pa.Array) -> pa.Array:
    """RFC 4180 minimal quoting: only values holding a quote, comma or newline."""
    needs = pc.fill_null(pc.match_substring_regex(col, NEEDS_QUOTE), False)
    if not pc.any(needs).as_py():
        return col
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, col)


CSV_CHUNK_ROWS = 200_000  # bounds the memory of a big file (day 1 holds the whole base)


def _csv_header(names: list[str]) -> bytes:
    return (",".join(_csv_quote(pa.array(names, type=pa.string())).to_pylist()) + "\n").encode()


def _csv_rows(table: pa.Table) -> bytes:
    """Data lines of ``table``, each ``\\n``-terminated, joined by Arrow kernels (no Python
    loop per row): the values buffer of the joined string array is the file body."""
    if table.num_rows == 0:
        return b""
    cols = [_csv_quote(table.column(i).combine_chunks()) for i in range(table.num_columns)]
    lines = pc.binary_join_element_wise(*cols, ",", null_handling="replace",
                                        null_replacement="")
    lines = pc.binary_join_element_wise(lines, "", "\n")
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)
    lo, hi = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[lo:hi].tobytes()


def _csv_bytes(table: pa.Table) -> bytes:
    """The whole file as bytes: header line, then one line per row."""
    return _csv_header(table.column_names) + _csv_rows(table)




def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "csv":
        with open(path, "wb") as f:
            f.write(_csv_header(table.column_names))
            for lo in range(0, table.num_rows, CSV_CHUNK_ROWS):
                f.write(_csv_rows(table.slice(lo, CSV_CHUNK_ROWS)))
    else:
        pq.write_table(table, path, compression="snappy")
