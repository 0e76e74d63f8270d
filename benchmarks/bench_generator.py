"""Time the demo generator at a given scale and print one JSON line.

Why: the generator must stay fast enough for 1M customers x 365 days (~10M interactions)
in about two minutes; ``make bench`` runs this so a slowdown shows up as a number.

    python benchmarks/bench_generator.py --customers 1000000 --days 365 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.demo import generate  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 7, 1))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--format", dest="fmt", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--faults", type=float, default=0.0)
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="cxloop-bench-"))
    try:
        t0 = time.perf_counter()
        s = generate(out, customers=args.customers, days=args.days, start=args.start,
                     seed=args.seed, fmt=args.fmt, faults=args.faults)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    # ru_maxrss is in KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, object] = {
        "customers": args.customers,
        "customers_total": s.customers_total,
        "days": args.days,
        "format": args.fmt,
        "faults": args.faults,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak, 1),
        "files": s.files_written,
        "bytes": size,
        "rows": s.rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
