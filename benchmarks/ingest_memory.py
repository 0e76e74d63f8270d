"""Peak memory of ingesting one large batch, as CSV and as Parquet (same rows).

Each format is ingested (stage, GX validation, load) in its own subprocess, which
reports its peak resident set (``getrusage(RUSAGE_SELF).ru_maxrss``) — the server's
memory is another process's and not counted. Parquet is streamed record batch by
record batch, so its peak should stay within 1.2x of the CSV's (target).

    python -m benchmarks.ingest_memory --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

DAYS = {"csv": date(2026, 8, 3), "parquet": date(2026, 8, 5)}
TARGET_RATIO = 1.2


def _files(home: Path, rows: int) -> Path:
    """The same rows as ``interactions.csv`` and ``interactions.parquet`` (one row group,
    as ``pyarrow.parquet.write_table`` writes a file of up to 1Mi rows)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from benchmarks.run import _interactions_file

    landing = home / "memory-landing"
    csv_dir = landing / "crm" / "interactions" / DAYS["csv"].isoformat()
    pq_dir = landing / "crm" / "interactions" / DAYS["parquet"].isoformat()
    csv_dir.mkdir(parents=True, exist_ok=True)
    pq_dir.mkdir(parents=True, exist_ok=True)
    path = _interactions_file(csv_dir / "interactions.csv", rows)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"wait_seconds": "int32", "handle_seconds": "int32"}))
    pq.write_table(table, pq_dir / "interactions.parquet", compression="snappy")
    return landing


def child(home: Path, landing: Path, fmt: str) -> dict:
    """Ingest one format's batch in this process; its peak RSS and timing."""
    import resource

    from flows import load
    from flows.config import load_settings
    from flows.extract import find_batches
    from flows.validate import GxRunner
    from flows.warehouse import open_warehouse

    settings = load_settings(None, landing=str(landing), home=str(home))
    wh = open_warehouse(home, database=f"cxloop_bench_memory_{fmt}")
    load.refresh_reference(wh, settings)
    gx = GxRunner(home, wh.sqlalchemy_url())
    batches = list(find_batches(settings, [DAYS[fmt]], ["interactions"]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    [r] = load.ingest_entity(wh, gx, "interactions", batches, f"bench-memory-{fmt}")
    seconds = time.perf_counter() - t0
    return {"format": fmt, "status": r.status, "rows_loaded": r.rows_loaded,
            "seconds": round(seconds, 2), "rss_before_ingest_mb": round(before),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def measure(home: Path, rows: int) -> dict:
    """Both formats, each in a fresh subprocess; the ratio parquet / csv of peak RSS."""
    landing = _files(home, rows)
    out: dict = {"rows": rows, "target_ratio": TARGET_RATIO}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for fmt in ("csv", "parquet"):
        res = subprocess.run([sys.executable, "-m", "benchmarks.ingest_memory", "--child", fmt,
                              "--home", str(home), "--landing", str(landing)],
                             env=env, capture_output=True, text=True, check=True)
        out[fmt] = json.loads(res.stdout.strip().splitlines()[-1])
    out["peak_rss_ratio"] = round(out["parquet"]["peak_rss_mb"] / out["csv"]["peak_rss_mb"], 3)
    out["within_target"] = out["peak_rss_ratio"] <= TARGET_RATIO
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--landing", type=Path, default=None)
    ap.add_argument("--child", choices=sorted(DAYS), default=None)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.home, args.landing, args.child)))
        return
    home = (args.home or Path(tempfile.mkdtemp(prefix="cxm-", dir="/tmp"))).resolve()
    result = measure(home, args.rows)
    print(json.dumps(result, indent=2))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"ingest-memory-{args.rows}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.home is None:
        from flows.warehouse import stop_embedded

        stop_embedded(home)


if __name__ == "__main__":
    main()
