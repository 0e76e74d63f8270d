"""The churn stage of a nightly run on a built home, timed on its own.

Against a backfilled home (e.g. bench-scale's 1M x 365), runs ``churn.run_churn`` as the
nightly run does (no forced refit: the stored model scores unless a refit is due), so
the figure is the nightly cost of scoring every active customer and writing the scores
and drivers, without the dbt builds around it. Writes the JSON to ``--out`` if given.

    python -m benchmarks.churn_nightly --home H --date 2026-01-02 [--refit] [--out F]

``--refit`` forces the refit a backfill's churn stage does (backtest, calibration, final
fit), to measure that path's time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a backfilled cxloop home")
    ap.add_argument("--date", type=date.fromisoformat, required=True,
                    help="the run date (the home's last built date)")
    ap.add_argument("--out", type=Path, help="where to write the JSON")
    ap.add_argument("--refit", action="store_true", help="force a refit (a backfill's path)")
    args = ap.parse_args(argv)
    from flows import churn
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    settings = load_settings(home=str(args.home), landing=str(args.home / "landing"))
    wh = open_warehouse(args.home, settings.warehouse_url, settings.database,
                        timezone=settings.timezone, migrate_schema=False)
    c = settings.churn
    t0 = time.perf_counter()
    res = churn.run_churn(wh, args.date, every_days=c.refit_every_days, force=args.refit,
                          min_events=c.min_events, min_concordance=c.min_concordance,
                          landmark_cfg=churn.LandmarkConfig.from_settings(c))
    out = {"command": "python -m benchmarks.churn_nightly --home H --date "
                      f"{args.date.isoformat()}" + (" --refit" if args.refit else ""),
           "home": str(args.home), "run_date": args.date.isoformat(),
           "seconds": round(time.perf_counter() - t0, 1), "scored": res.scored,
           "refitted": res.refitted, "note": res.note,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
