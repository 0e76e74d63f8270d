"""Bare COPY of a landing's files next to cxloop's validate+load of the same files.

The load target of issue 16 is relative: validate + load of a backfill at >= 0.5x the
throughput of a bare COPY of the same files on the same server. ``bare_copy`` is that
baseline: every batch a landing holds for the dates, read exactly as cxloop reads it
(CSV and gzip as bytes in the file's encoding and delimiter, Parquet turned into CSV one
record batch at a time, by ``flows.load._copy_source``), COPYed into a plain logged table
per entity with the contract's column types, no lineage, checks or partitions, and one
commit at the end. benchmarks/scale.py imports it.

    python -m benchmarks.copy_baseline --landing /work/scale/l100k \\
        --start 2025-01-01 --end 2025-12-31 [--rounds 1] [--home DIR] [--url URL]

runs, alternating, a fresh cxloop ingest of those dates (validate + load only, through
``flows.load.ingest_entity`` into a new database, as the pipeline's validate+load stage)
and the bare COPY into the same server, and prints JSON with both throughputs and the
ratio (cxloop rows/s over bare COPY rows/s); ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from psycopg2 import sql

from flows.warehouse import Warehouse

SCHEMA = "bare_copy"


def _warehouse(dsn_or_warehouse: str | Warehouse) -> Warehouse:
    return dsn_or_warehouse if isinstance(dsn_or_warehouse, Warehouse) else Warehouse(
        url=dsn_or_warehouse)


def _batches(landing: str | Path, start: date, end: date) -> list:
    from flows.config import load_settings
    from flows.extract import dates_between, find_batches

    settings = load_settings(None, landing=str(landing))
    return list(find_batches(settings, dates_between(start, end)))


def bare_copy(dsn_or_warehouse: str | Warehouse, landing: str | Path, start: date,
              end: date) -> dict:
    """COPY every file of ``landing`` dated ``start``..``end`` into plain logged tables.

    ``dsn_or_warehouse``: a libpq URL or a ``flows.warehouse.Warehouse`` (the server
    cxloop loads into, for a fair comparison). One table per entity in schema
    ``bare_copy`` (dropped and created anew, then dropped after timing), the contract's
    column types, one COPY per file, one commit at the end. Returns ``rows``,
    ``seconds`` (first COPY to commit) and ``rows_per_s``.
    """
    from flows.entities import ENTITIES
    from flows.extract import read_header
    from flows.load import _copy_format, _copy_source

    wh = _warehouse(dsn_or_warehouse)
    batches = _batches(landing, start, end)
    conn = wh.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop schema if exists {s} cascade; create schema {s}").format(
                s=sql.Identifier(SCHEMA)))
            for name in sorted({b.entity for b in batches}):
                cols = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                    for c in ENTITIES[name].raw_columns)
                cur.execute(sql.SQL("create table {}.{} ({})").format(
                    sql.Identifier(SCHEMA), sql.Identifier(name), cols))
        conn.commit()
        rows = 0
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for b in batches:
                stream = _copy_source(b)[0]
                encoding, delimiter = _copy_format(b, None)
                copy = sql.SQL("copy {}.{} ({}) from stdin with (format csv, header true, "
                               "delimiter {}, encoding {}, null '')").format(
                    sql.Identifier(SCHEMA), sql.Identifier(b.entity),
                    sql.SQL(", ").join(map(sql.Identifier, read_header(b))),
                    sql.Literal(delimiter), sql.Literal(encoding))
                with stream:
                    cur.copy_expert(copy.as_string(conn), stream, size=1 << 20)
                rows += cur.rowcount
        conn.commit()
        seconds = time.perf_counter() - t0
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(SCHEMA)))
        conn.commit()
    finally:
        conn.close()
    return {"rows": rows, "files": len(batches), "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds) if seconds else 0}


def cxloop_ingest(home: Path, landing: str | Path, start: date, end: date, database: str,
                  url: str | None = None) -> dict:
    """validate + load of the dates into a fresh database, as the pipeline's stage runs it
    (reference refresh, one GX context, ``ingest_entity`` per entity in contract order).
    The database is dropped afterwards."""
    from flows import load
    from flows.config import load_settings
    from flows.entities import ENTITIES
    from flows.extract import dates_between, find_batches
    from flows.validate import GxRunner
    from flows.warehouse import open_warehouse

    settings = load_settings(None, landing=str(landing), home=str(home))
    admin = open_warehouse(home, url, database="postgres", migrate_schema=False)
    _drop_database(admin, database)
    if url:  # an external server: the database is created here, as embedded does itself
        _create_database(admin, database)
        url = admin.url.rsplit("/", 1)[0] + "/" + database
    wh = open_warehouse(home, url, database=database, timezone=settings.timezone)
    batches = list(find_batches(settings, dates_between(start, end)))
    run_id = f"bench-copy-{database}"
    t0 = time.perf_counter()
    load.refresh_reference(wh, settings)
    gx = GxRunner(home, wh.sqlalchemy_url())
    gx_seconds = time.perf_counter() - t0
    results = []
    for name in ENTITIES:
        mine = [b for b in batches if b.entity == name]
        if mine:
            results += load.ingest_entity(wh, gx, name, mine, run_id)
    seconds = time.perf_counter() - t0
    rows_in = sum(r.rows_in for r in results)
    out = {"rows": rows_in, "rows_loaded": sum(r.rows_loaded for r in results),
           "rows_quarantined": sum(r.rows_quarantined for r in results),
           "batches": len(results),
           "loaded": sum(r.status == "loaded" for r in results),
           "seconds": round(seconds, 2), "setup_seconds": round(gx_seconds, 2),
           "rows_per_s": round(rows_in / seconds) if seconds else 0,
           # This process so far (the bare COPY streams too): memory is bounded by a batch.
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    gx.datasource.get_engine().dispose()
    _drop_database(admin, database)
    return out


def _create_database(admin: Warehouse, database: str) -> None:
    conn = admin.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    finally:
        conn.close()


def _drop_database(admin: Warehouse, database: str) -> None:
    conn = admin.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(database)))
    finally:
        conn.close()


def _checkpoint(wh: Warehouse) -> None:
    """Neither side pays for the other's WAL."""
    conn = wh.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("checkpoint")
    finally:
        conn.close()


def compare(home: Path, landing: str | Path, start: date, end: date, rounds: int = 1,
            url: str | None = None) -> dict:
    """Alternate bare COPY and a fresh cxloop ingest ``rounds`` times on one server;
    medians, each round, and the ratio of throughputs (target >= 0.5)."""
    from flows.warehouse import open_warehouse

    base = open_warehouse(home, url, database="cxloop_bench_bare", migrate_schema=False)
    per_round = []
    for i in range(rounds):
        _checkpoint(base)
        bare = bare_copy(base, landing, start, end)
        _checkpoint(base)
        ours = cxloop_ingest(home, landing, start, end, f"cxloop_bench_copy_{i}", url)
        per_round.append({"bare_copy": bare, "cxloop": ours,
                          "ratio": round(ours["rows_per_s"] / bare["rows_per_s"], 3)})
    bare_rps = statistics.median(r["bare_copy"]["rows_per_s"] for r in per_round)
    ours_rps = statistics.median(r["cxloop"]["rows_per_s"] for r in per_round)
    return {"landing": str(landing), "start": start.isoformat(), "end": end.isoformat(),
            "rounds": rounds, "rows": per_round[0]["bare_copy"]["rows"],
            "files": per_round[0]["bare_copy"]["files"],
            "bare_copy_rows_per_s": round(bare_rps), "cxloop_rows_per_s": round(ours_rps),
            "cxloop_seconds": statistics.median(r["cxloop"]["seconds"] for r in per_round),
            "bare_copy_seconds": statistics.median(r["bare_copy"]["seconds"] for r in per_round),
            "ratio": round(ours_rps / bare_rps, 3), "target_ratio": 0.5,
            # Without the fixed set-up (reference refresh, GX context), which does not grow
            # with the rows: where the ratio goes as the landing grows.
            "ratio_without_setup": round(statistics.median(
                r["cxloop"]["rows"] / max(r["cxloop"]["seconds"] - r["cxloop"]["setup_seconds"],
                                          1e-9) / r["bare_copy"]["rows_per_s"]
                for r in per_round), 3),
            "per_round": per_round}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.copy_baseline",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--landing", required=True, help="landing folder (cxloop's layout)")
    ap.add_argument("--start", required=True, type=date.fromisoformat)
    ap.add_argument("--end", required=True, type=date.fromisoformat)
    ap.add_argument("--rounds", type=int, default=1, help="bare COPY / cxloop pairs")
    ap.add_argument("--home", type=Path, help="warehouse home (default: a new temp folder)")
    ap.add_argument("--url", help="an external PostgreSQL instead of the embedded one")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="cxloop-copy-baseline-"))
    result = compare(home, args.landing, args.start, args.end, args.rounds, args.url)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
