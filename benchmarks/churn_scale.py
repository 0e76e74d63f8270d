"""Churn-stage time at scale, through the pipeline's own path.

Generates the demo at ``--customers`` x ``--days`` (365 days: 12 observation dates 30 days
apart), regroups each entity's nightly extracts into one batch per ``--batch-days`` (the
loader's per-batch overhead, not the churn stage, would otherwise dominate at 1M
customers: 2,555 nightly files; the latest copy of a key within a block is kept, as the
staging layer would keep it), loads and builds everything with ``pipeline.backfill``,
then times the churn stage on its own, as the nightly run does it:

- ``observations_seconds``: ``dbt build`` of int_subscription_versions and
  int_churn_observations (the observation table, with its tests);
- ``fit_score_seconds``: ``churn.run_churn(force=True)``: read the earlier dates (sampling
  whole customers in SQL above ``max_rows``), backtest the penalizers, calibrate, refit,
  score every active customer in chunks of 100k, write scores and drivers.

Peak memory is the Python process's (``ru_maxrss``); PostgreSQL runs in its own processes.

``--churn-inputs-only`` (for 1M customers, where the whole backfill - drivers, every mart,
tasks, docs - takes far longer than the churn stage): load the same batches with the
pipeline's loader (``load.ingest_entity``, validation included) and ``dbt build`` only the
models upstream of int_churn_observations, i.e. the warehouse tables the churn stage reads.

    python -m benchmarks.churn_scale --customers 100000 --days 365
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")

RESULTS = Path(__file__).resolve().parent / "results"
START = date(2026, 7, 1)


def regroup(landing: Path, batch_days: int) -> int:
    """Merge every ``batch_days`` nightly parquet extracts of an entity into one batch.

    The merged file lands in the block's last date folder (its extract date); a key that
    occurs more than once in the block keeps its last copy (a re-export, a later version).
    Returns the number of batches written.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from flows.entities import ENTITIES

    written = 0
    for source in landing.iterdir():
        if source.name.startswith("_") or not source.is_dir():
            continue
        for ent_dir in source.iterdir():
            key = list(ENTITIES[ent_dir.name].key)
            days = sorted(d for d in ent_dir.iterdir() if d.is_dir())
            for lo in range(0, len(days), batch_days):
                block = days[lo:lo + batch_days]
                files = [f for d in block for f in sorted(d.glob("*.parquet"))]
                if not files:
                    continue
                table = pa.concat_tables([pq.read_table(f) for f in files],
                                         promote_options="permissive")
                table = table.append_column("_i", pa.array(range(len(table)), pa.int64()))
                last = table.group_by(key).aggregate([("_i", "max")])["_i_max"]
                table = table.take(pc.sort_indices(last)).drop_columns(["_i"])
                for f in files:
                    f.unlink()
                for d in block[:-1]:
                    d.rmdir()
                pq.write_table(table, block[-1] / f"{ent_dir.name}_{block[-1].name.replace('-', '')}"
                               ".parquet")
                written += 1
    return written


def load_churn_inputs(home: Path, landing: Path, end: date) -> dict:
    """Load every batch with the pipeline's loader, build the churn stage's upstream only."""
    from flows import extract, load, transform
    from flows.config import load_settings
    from flows.entities import ENTITIES
    from flows.validate import gx_runner_for
    from flows.warehouse import open_warehouse

    settings = load_settings(landing=str(landing))
    wh = open_warehouse(home)
    t0 = time.perf_counter()
    load.refresh_reference(wh, settings)
    batches = extract.find_batches(settings, extract.dates_between(START, end))
    gx = gx_runner_for(str(home), wh.sqlalchemy_url())
    rows = 0
    for name in ENTITIES:
        mine = [b for b in batches if b.entity == name]
        rows += sum(r.rows_loaded for r in load.ingest_entity(wh, gx, name, mine, "bench"))
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    transform.build(wh, settings, end, select="+int_churn_observations",
                    exclude="int_subscription_versions int_churn_observations")
    return {"inputs": "loaded with load.ingest_entity; dbt built +int_churn_observations only",
            "load_seconds": round(loaded, 1), "rows_loaded": rows,
            "upstream_dbt_seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--batch-days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", type=Path, default=None, help="reuse a loaded folder")
    ap.add_argument("--churn-inputs-only", action="store_true",
                    help="load and build only what the churn stage reads (no full backfill)")
    args = ap.parse_args(argv)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="cxs-", dir="/tmp"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ["CXLOOP_HOME"] = str(work / "home")
    from flows import churn, pipeline, transform
    from flows.config import load_settings
    from flows.demo import generate
    from flows.warehouse import open_warehouse, stop_embedded

    landing, home = work / "landing", work / "home"
    end = START + timedelta(days=args.days - 1)
    out: dict = {"customers": args.customers, "days": args.days, "batch_days": args.batch_days,
                 "seed": args.seed, "cpus": os.cpu_count()}
    if not (landing / "_truth" / "truth.json").exists():
        t0 = time.perf_counter()
        generate(landing, customers=args.customers, days=args.days, start=START,
                 seed=args.seed, fmt="parquet")
        out["generate_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        out["batches"] = regroup(landing, args.batch_days)
        out["regroup_seconds"] = round(time.perf_counter() - t0, 1)
    if not home.exists() and args.churn_inputs_only:
        out.update(load_churn_inputs(home, landing, end))
    elif not home.exists():
        t0 = time.perf_counter()
        summary = pipeline.backfill(start=START, end=end, landing=str(landing))
        out["backfill_seconds"] = round(time.perf_counter() - t0, 1)
        out["backfill_status"] = summary["status"]
        out["backfill_stages"] = {k: v.get("seconds") for k, v in summary["stages"].items()}
        out["rows_loaded"] = summary["rows_loaded"]
    wh = open_warehouse(home)
    try:
        settings = load_settings(landing=str(landing))
        t0 = time.perf_counter()
        transform.build(wh, settings, end, select="int_subscription_versions int_churn_observations")
        out["observations_seconds"] = round(time.perf_counter() - t0, 1)
        with wh.transaction() as cur:
            cur.execute("select count(*), count(distinct observation_date) "
                        "from intermediate.int_churn_observations")
            out["observation_rows"], out["observation_dates"] = cur.fetchone()
        t0 = time.perf_counter()
        res = churn.run_churn(wh, end, force=True)
        out["fit_score_seconds"] = round(time.perf_counter() - t0, 1)
        out["churn_stage_seconds"] = round(out["observations_seconds"]
                                           + out["fit_score_seconds"], 1)
        bt = res.metrics.get("backtest") or {}
        raw = bt.get("model_raw", {})
        out.update({"scored": res.scored, "note": res.note,
                    "training_rows": raw.get("training_rows"),
                    "training_events": raw.get("training_events"),
                    "fitting_sample": "the fit reads the dates before the run date, whole "
                                      "customers sampled in SQL above LandmarkConfig.max_rows "
                                      "(400k) rows; the penalizer search on at most "
                                      "search_rows (150k); the run date's customers are "
                                      "scored in chunks of 100k",
                    "backtest_concordance": raw.get("concordance"),
                    "tenure_only_concordance": (bt.get("baselines", {})
                                                .get("tenure_only_km", {}).get("concordance"))})
    finally:
        stop_embedded(home)
    out["python_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"churn-scale-{args.customers}x{args.days}.json"
    if "backfill_seconds" not in out and "load_seconds" not in out and path.exists():
        # a reused, already loaded folder: keep how it was loaded, say that it was earlier
        loaded = {k: v for k, v in json.loads(path.read_text()).items()
                  if k in ("generate_seconds", "batches", "regroup_seconds", "backfill_seconds",
                           "backfill_status", "backfill_stages", "rows_loaded", "inputs",
                           "load_seconds", "upstream_dbt_seconds")}
        out = {**out, **loaded, "loaded_in_an_earlier_run": True}
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps(out, indent=1, default=str))
    return path


if __name__ == "__main__":
    main()
