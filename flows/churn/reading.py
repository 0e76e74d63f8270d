"""Reading the observation table into Python with memory that follows a cap, not the base.

The table holds every active customer on the run date (they are scored) and, for
earlier dates, a sample of whole customers (int_churn_observations samples it to about
``churn_history_max_rows``). The fit needs the earlier rows only; the run date's rows are
read and scored in chunks of ``chunk_rows`` customers, so a million customers are never
in memory at once.

Rows travel by ``COPY ... TO STDOUT`` (``flows.warehouse.frames``): a column of floats
is a float array, not a list of Python objects.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
from psycopg2 import sql

from flows.warehouse import Warehouse
from flows.warehouse.frames import copy_query_frame, result_columns

log = logging.getLogger(__name__)

OBSERVATIONS = "intermediate.int_churn_observations"
# Not read: the key text is rebuilt from customer and date wherever it is needed.
SKIPPED = ("observation_id",)
CHUNK_ROWS = 100_000

def _columns(wh: Warehouse, relation: sql.Composable) -> list[tuple[str, Any]]:
    return result_columns(wh, sql.SQL("select * from {}").format(relation), skip=SKIPPED)


def copy_frame(wh: Warehouse, relation: sql.Composable, where: sql.Composable,
               params: dict[str, Any]) -> pd.DataFrame:
    """``select <columns> from relation where ...`` as a typed DataFrame, through COPY."""
    cols = _columns(wh, relation)
    query = sql.SQL("select {} from {} where {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c, _ in cols), relation, where)
    return copy_query_frame(wh, query, params, cols)


def observation_bounds(wh: Warehouse) -> tuple[int, int, date | None] | None:
    """(rows, rows of the latest date, latest date), or None when the table is missing."""
    try:
        with wh.transaction() as cur:
            # one scan (rows per date), not two: 15 s of a 1M-customer nightly with two
            cur.execute(f"select observation_date, count(*) from {OBSERVATIONS} "
                        "group by observation_date order by observation_date desc")
            per_date = cur.fetchall()
    except Exception as err:  # a missing relation: nothing loaded or built yet
        log.info("no churn observations: %s", err)
        return None
    if not per_date:
        return 0, 0, None
    return sum(int(n) for _, n in per_date), int(per_date[0][1]), per_date[0][0]


def read_history(wh: Warehouse, last: date, max_rows: int | None) -> pd.DataFrame:
    """The rows dated before ``last`` (what the fit and the curves use): every one, or
    whole customers sampled in SQL by a hash of the id when there are more than
    ``max_rows`` (sampling customers rather than rows needs no weights)."""
    with wh.transaction() as cur:
        cur.execute(f"select count(*) from {OBSERVATIONS} where observation_date < %s", (last,))
        n = cur.fetchone()[0]
    rel = sql.SQL(OBSERVATIONS)
    if max_rows is None or n <= max_rows:
        return copy_frame(wh, rel, sql.SQL("observation_date < %(last)s"), {"last": last})
    buckets = max(1, int(1024 * max_rows / n))
    frame = copy_frame(wh, rel, sql.SQL("observation_date < %(last)s and "
                                        "(hashtext(customer_id) & 1023) < %(buckets)s"),
                       {"last": last, "buckets": buckets})
    frame.attrs["sampled_customers_share"] = buckets / 1024
    return frame


def today_chunks(wh: Warehouse, last: date, rows: int,
                 chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The rows of ``last`` (every active customer) in about ``chunk_rows``-row chunks,
    split by a hash of the customer id (each customer in exactly one chunk)."""
    n = max(1, math.ceil(rows / chunk_rows))
    rel = sql.SQL(OBSERVATIONS)
    for k in range(n):
        yield copy_frame(wh, rel, sql.SQL(
            "observation_date = %(last)s and mod(hashtext(customer_id) & 2147483647, %(n)s) = %(k)s"),
            {"last": last, "n": n, "k": k})
