"""What a file's lineage columns cost its COPY: constants set per file against settings.

The load COPYs each file into its month's group table, whose lineage columns
(``_batch_id``, ``_source_file``, ``_extract_date``) are filled by column defaults. This
COPYs the same files, alternating, into three tables: with no lineage columns at all
(bare), with the defaults as constants set by one ALTER before each file (the load's
own ``flows.load.tables.lineage_defaults``), and with the defaults reading session settings
(``current_setting``, evaluated for every row: what it did before). All three have the
row counter and the CHECK on the batch ids that the load's group table has.

    python -m benchmarks.copy_lineage --landing L --entity interactions \\
        --month 2025-03 [--rounds 5] [--home DIR]

Prints JSON: seconds per round and the median of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from psycopg2 import sql


def _tables(e: Any, ids: list[str]) -> dict[str, sql.Composable]:
    base = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    check = sql.SQL("check (_batch_id = any(array[{}]::text[]))").format(
        sql.SQL(", ").join(map(sql.Literal, ids)))
    tail = [sql.SQL("_row_number bigint not null default nextval('pg_temp.lineage_rows')"),
            sql.SQL("_loaded_at timestamptz not null default now()"), check]

    def setting(name: str) -> sql.Composable:
        return sql.SQL("current_setting({})").format(sql.Literal(f"cxloop.{name}"))

    settings = [sql.SQL("_batch_id text not null default {}").format(setting("batch_id")),
                sql.SQL("_source_file text not null default {}").format(setting("source_file")),
                sql.SQL("_extract_date date not null default {}::date").format(
                    setting("extract_date"))]
    constants = [sql.SQL("_batch_id text not null"), sql.SQL("_source_file text not null"),
                 sql.SQL("_extract_date date not null")]
    return {"bare": sql.SQL(", ").join(base),
            "constants_per_file": sql.SQL(", ").join(base + constants + tail),
            "settings_per_row": sql.SQL(", ").join(base + settings + tail)}


def run(landing: Path, entity: str, month: str, rounds: int, home: Path) -> dict[str, Any]:
    from flows.entities import ENTITIES
    from flows.load.tables import lineage_defaults
    from flows.warehouse import open_warehouse

    e = ENTITIES[entity]
    files = sorted(landing.glob(f"*/{entity}/{month}-*/*.csv"))
    if not files:
        raise SystemExit(f"no CSV files of {entity} for {month} under {landing}")
    ids = [f"lineage-bench-{i}" for i in range(len(files))]
    conn = open_warehouse(home).connect()
    seconds: dict[str, list[float]] = {}
    rows = 0
    try:
        with conn.cursor() as cur:
            cur.execute("create sequence pg_temp.lineage_rows cache 10000")
            for _ in range(rounds):
                for name, columns in _tables(e, ids).items():
                    table = sql.Identifier(f"lineage_bench_{name}")
                    cur.execute(sql.SQL("drop table if exists {t}; create table {t} ({c})")
                                .format(t=table, c=columns))
                    conn.commit()
                    rows, t0 = 0, time.perf_counter()
                    for batch_id, path in zip(ids, files, strict=True):
                        day = date.fromisoformat(path.parent.name)
                        if name == "constants_per_file":  # the load's own ALTER
                            cur.execute(lineage_defaults(table, SimpleNamespace(
                                batch_id=batch_id, path=path, extract_date=day)))
                        elif name == "settings_per_row":
                            cur.execute("select set_config('cxloop.batch_id', %s, true), "
                                        "set_config('cxloop.source_file', %s, true), "
                                        "set_config('cxloop.extract_date', %s, true)",
                                        (batch_id, str(path), day.isoformat()))
                        cur.execute("select setval('pg_temp.lineage_rows', 1, false)")
                        copy = sql.SQL("copy {} ({}) from stdin with (format csv, header true, "
                                       "null '')").format(table, sql.SQL(", ").join(
                                           map(sql.Identifier, _header(path))))
                        with path.open("rb") as fh:
                            cur.copy_expert(copy.as_string(conn), fh, size=1 << 20)
                        rows += cur.rowcount
                    conn.commit()
                    seconds.setdefault(name, []).append(round(time.perf_counter() - t0, 2))
                    cur.execute(sql.SQL("drop table {}").format(table))
                    conn.commit()
    finally:
        conn.close()
    return {"entity": entity, "month": month, "files": len(files), "rows": rows,
            "seconds": seconds,
            "median_seconds": {k: statistics.median(v) for k, v in seconds.items()}}


def _header(path: Path) -> list[str]:
    """The file's header (the demo landing's CSVs: UTF-8, comma-separated)."""
    with path.open(encoding="utf-8") as fh:
        return [h.strip() for h in fh.readline().rstrip("\r\n").split(",")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True, help="a landing (cxloop's layout)")
    ap.add_argument("--entity", default="interactions")
    ap.add_argument("--month", default="2025-03", help="YYYY-MM: the files of that month")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--home", type=Path, help="warehouse home (default: a new temp folder)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxloop-lineage-") as tmp:
        out = run(a.landing, a.entity, a.month, a.rounds, a.home or Path(tmp))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
