"""Query results as DataFrames through ``COPY ... TO STDOUT`` and pyarrow, not row by row.

A result fetched through a cursor is a list of tuples of Python objects, one per value,
before pandas sees it: a float is a 24-byte object, a numeric a ``Decimal`` of about
100 bytes, every text value its own string. A half-million-row, sixty-column table
took about 2 GB that way, and the drivers' sample of 1.1M long rows raised a 1M
backfill by 880 MB. Through COPY into a
temporary file, pyarrow parses the CSV with the column types PostgreSQL reports (a
column of floats is one float array) and hands pandas each repeated string once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from flows.warehouse.connection import Warehouse

# PostgreSQL type OIDs -> the arrow type their CSV text parses to (anything else: text).
ARROW_TYPES = {16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(),
               700: pa.float64(), 701: pa.float64(), 1700: pa.float64(),
               1082: pa.timestamp("s"), 1114: pa.timestamp("us")}


def result_columns(wh: Warehouse, query: sql.Composable, params: dict[str, Any] | None = None,
                   skip: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """(name, arrow type) of each column the query returns, without running it whole."""
    with wh.transaction() as cur:
        cur.execute(sql.SQL("select * from ({}) as q limit 0").format(query), params)
        return [(d.name, ARROW_TYPES.get(d.type_code, pa.string())) for d in cur.description
                if d.name not in skip]


def copy_query_frame(wh: Warehouse, query: sql.Composable, params: dict[str, Any] | None = None,
                     columns: list[tuple[str, Any]] | None = None) -> pd.DataFrame:
    """The query's rows as a typed DataFrame, through COPY. ``columns``: its (name, arrow
    type) pairs when the caller knows them (``result_columns``), in the query's order."""
    cols = columns if columns is not None else result_columns(wh, query, params)
    with tempfile.TemporaryFile() as buf:
        with wh.transaction() as cur:
            copy = sql.SQL("copy ({}) to stdout with (format csv, header)").format(
                sql.SQL(cur.mogrify(query, params).decode()))
            cur.copy_expert(copy.as_string(cur), buf)
        buf.seek(0)
        table = pacsv.read_csv(
            buf, convert_options=pacsv.ConvertOptions(
                column_types=dict(cols), true_values=["t"], false_values=["f"],
                null_values=[""], quoted_strings_can_be_null=False, strings_can_be_null=True))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    return frame
