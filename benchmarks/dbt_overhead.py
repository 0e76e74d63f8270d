"""What a run pays dbt beyond its models: parsing the project and generating the docs.

On a kept home, in one process, rounds alternate between a run's four dbt invocations
(three builds and the docs) done the way they were before 5f2bfef / 5fbc56c and the way
they are now:

- ``varying``: the second build adds ``task_dates_from`` to the vars, so each of the
  three builds parses the whole project (the docs share the third's vars and parse);
  the docs are generated.
- ``same``: every invocation passes the run's vars (``transform.dbt_vars``), so dbt
  parses once per run; the docs site is kept when its inputs are unchanged.

Each invocation builds one small model (``int_task_dates``), so what differs is dbt's own
overhead, not the SQL. Each round first parses with vars of another date, as a new
night does.

    python -m benchmarks.dbt_overhead --home H --date D [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one_run(wh, settings, day: date, style: str) -> float:
    from flows import transform

    t0 = time.perf_counter()
    sel = ["build", "--select", "int_task_dates"]
    if style == "varying":
        transform.run_dbt(wh, settings, sel, day, {"task_dates_from": None})
        transform.run_dbt(wh, settings, sel, day, {"task_dates_from": day.isoformat()})
        transform.run_dbt(wh, settings, sel, day, {"task_dates_from": None})
        transform.run_dbt(wh, settings, ["docs", "generate"], day, {"task_dates_from": None})
    else:
        for _ in range(3):
            transform.run_dbt(wh, settings, sel, day)
        transform.docs_generate(wh, settings, day)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--date", type=date.fromisoformat, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    from flows import transform
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    home = args.home.resolve()
    settings = load_settings(None, home=str(home))
    wh = open_warehouse(home, url=settings.warehouse_url, migrate_schema=False)
    other = args.date - timedelta(days=1)
    transform.docs_generate(wh, settings, args.date)  # the site as the night before left it
    seconds: dict[str, list[float]] = {"varying": [], "same": []}
    for _ in range(args.rounds):
        for style in ("varying", "same"):
            # the night before parsed with its own run_date
            transform.run_dbt(wh, settings, ["build", "--select", "int_task_dates"], other)
            seconds[style].append(round(one_run(wh, settings, args.date, style), 2))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "home": str(home), "date": args.date.isoformat(), "rounds": args.rounds,
        "what": "a run's four dbt invocations, each building int_task_dates: vars varying "
                "between them and the docs generated (before) against one set of vars "
                "and the docs site kept (now)",
        "seconds": seconds, "median_seconds": med,
        "saved_per_run_seconds": round(med["varying"] - med["same"], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dbt-overhead-{datetime.now():%Y%m%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return out


if __name__ == "__main__":
    main()
