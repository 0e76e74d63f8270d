"""``make bench``: run the demo pipeline at a scale and record where the time goes.

Writes one JSON file to ``benchmarks/results/`` with, measured in the same run so
ratios are meaningful on a noisy machine:

- ``pipeline``: per-stage wall seconds and row counts of a full backfill;
- ``ingest``: cxloop's validate+load of one large interactions batch against a
  bare ``COPY`` of the same file into a scratch table, in alternating rounds
  (targets: load at least half as fast as bare COPY, validation costing no more
  than the load), plus the same file with one value that does not parse;
- ``ingest_memory``: peak RSS of ingesting the same rows as one CSV and as one
  Parquet batch, each in its own subprocess (target: Parquet within 1.2x of CSV);
- ``churn``: the pipeline's churn stage on the demo (backtest concordance next to tenure
  alone and the oracle), then the churn-stage time at 100k and 1M customers through the
  pipeline's own path (``benchmarks/churn_scale.py``).

    python -m benchmarks.run --customers 20000 --days 120 [--ingest-rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")

RESULTS = Path(__file__).resolve().parent / "results"
START = date(2026, 7, 1)


def bench_pipeline(home: Path, landing: Path, days: int) -> dict:
    from flows import pipeline

    os.environ["CXLOOP_HOME"] = str(home)
    t0 = time.perf_counter()
    summary = pipeline.backfill(start=START, end=START + timedelta(days=days - 1),
                                landing=str(landing))
    return {"wall_seconds": round(time.perf_counter() - t0, 2), "status": summary["status"],
            "rows_loaded": summary["rows_loaded"], "batches": summary["batches"],
            "stages": summary["stages"]}


def _interactions_file(path: Path, rows: int) -> Path:
    """A large, valid interactions batch (what one big CRM export looks like)."""
    import numpy as np

    from flows.entities import ENTITIES

    rng = np.random.default_rng(1)
    tps = ["billing", "support_call", "app_usage", "store_visit", "installation"]
    chans = ["web", "phone", "app", "store", "field"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ENTITIES["interactions"].column_names)
        chunk = 200_000
        for lo in range(0, rows, chunk):
            n = min(chunk, rows - lo)
            k = rng.integers(0, 5, n)
            secs = rng.integers(0, 86_000, n)
            for i in range(n):
                w.writerow([f"I{lo + i:09d}", f"C{rng.integers(0, 10**6):08d}", tps[k[i]],
                            chans[k[i]], f"2026-08-03 {secs[i] // 3600:02d}:"
                            f"{secs[i] % 3600 // 60:02d}:00", int(secs[i] % 900),
                            int(secs[i] % 1200), "true", "false"])
    return path


def bench_ingest(home: Path, rows: int, rounds: int = 3) -> dict:
    """cxloop validate+load vs a bare COPY of the same file, same server, same run.

    Rounds alternate bare COPY and cxloop so both see the same machine state (WAL,
    checkpoints, page cache); the figures are medians over the rounds, and each round's
    ratios are kept too.
    """
    import statistics

    from flows import load
    from flows.config import load_settings
    from flows.entities import ENTITIES
    from flows.extract import find_batches
    from flows.validate import GxRunner
    from flows.warehouse import open_warehouse

    landing = home / "ingest-landing"
    day_dir = landing / "crm" / "interactions" / "2026-08-03"
    day_dir.mkdir(parents=True, exist_ok=True)
    path = _interactions_file(day_dir / "interactions_20260803.csv", rows)
    settings = load_settings(None, landing=str(landing), home=str(home))
    wh = open_warehouse(home, database="cxloop_bench_ingest")
    # Same typed columns as raw.interactions, none of cxloop's lineage or checks.
    cols = ", ".join(ENTITIES["interactions"].column_names)

    def reset() -> None:
        with wh.transaction() as cur:
            cur.execute("select inhrelid::regclass::text from pg_inherits "
                        "where inhparent = 'raw.interactions'::regclass")
            for (part,) in cur.fetchall():
                cur.execute(f"drop table {part}")
            cur.execute("truncate quarantine.interactions; "
                        "delete from ops.load_batches where entity = 'interactions'")
            for table, kind in (("bare_copy", ""), ("bare_copy_unlogged", "unlogged")):
                cur.execute(f"drop table if exists public.{table}; create {kind} table "
                            f"public.{table} as select {cols} from raw.interactions with no data")
        conn = wh.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("checkpoint")  # no round pays for the previous one's WAL
        finally:
            conn.close()

    def bare_copy(table: str) -> float:
        conn = wh.connect()
        try:
            t0 = time.perf_counter()
            with conn, conn.cursor() as cur, open(path, "rb") as f:
                header = ", ".join(next(csv.reader([f.readline().decode()])))
                f.seek(0)
                cur.copy_expert(f"copy public.{table} ({header}) from stdin "
                                "with (format csv, header true)", f)
            return time.perf_counter() - t0
        finally:
            conn.close()

    load.refresh_reference(wh, settings)
    gx = GxRunner(home, wh.sqlalchemy_url())
    batches = list(find_batches(settings, [date(2026, 8, 3)]))
    timings: dict[str, float] = {}
    orig_validate = load._validate_stage

    def timed_validate(*a, **k):  # split validation from loading in the same run
        t = time.perf_counter()
        orig_validate(*a, **k)
        timings["validate"] = time.perf_counter() - t

    per_round = []
    load._validate_stage = timed_validate
    try:
        for _ in range(rounds):
            reset()
            # Baseline: COPY into a durable (logged) table like raw; unlogged for reference.
            bare = bare_copy("bare_copy")
            bare_unlogged = bare_copy("bare_copy_unlogged")
            t0 = time.perf_counter()
            [r] = load.ingest_entity(wh, gx, "interactions", batches, "bench")
            ours = time.perf_counter() - t0
            assert r.rows_loaded == rows, r
            load_only = ours - timings["validate"]
            per_round.append({"bare_copy_seconds": bare, "bare_copy_unlogged_seconds":
                              bare_unlogged, "validate_seconds": timings["validate"],
                              "load_seconds": load_only, "validate_load_seconds": ours,
                              "load_throughput_ratio": bare / load_only,
                              "validation_over_load": timings["validate"] / load_only})
        # The slow path, for reference: the same file with one value that does not
        # parse in its last row (typed COPY fails, the file is staged as text and cast).
        bad_dir = landing / "crm" / "interactions" / "2026-08-04"
        bad_dir.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)
        last = data[1].split(b",")
        last[5] = b"not-a-number"  # wait_seconds
        (bad_dir / "interactions_20260804.csv").write_bytes(
            data[0] + b"\n" + b",".join(last) + b"\n")
        reset()
        t0 = time.perf_counter()
        [slow] = load.ingest_entity(wh, gx, "interactions",
                                    list(find_batches(settings, [date(2026, 8, 4)])), "bench")
        parse_fallback = {"seconds": round(time.perf_counter() - t0, 2),
                          "rows_loaded": slow.rows_loaded,
                          "rows_quarantined": slow.rows_quarantined}
    finally:
        load._validate_stage = orig_validate

    def med(key: str, digits: int = 2) -> float:
        return round(statistics.median(x[key] for x in per_round), digits)

    return {"rows": rows, "rounds": rounds,
            "bare_copy_seconds": med("bare_copy_seconds"),
            "bare_copy_unlogged_seconds": med("bare_copy_unlogged_seconds"),
            "validate_seconds": med("validate_seconds"),
            "load_seconds": med("load_seconds"),
            "validate_load_seconds": med("validate_load_seconds"),
            # Targets: load_throughput_ratio >= 0.5, validation_over_load <= 1.
            "load_throughput_ratio": med("load_throughput_ratio", 3),
            "validation_over_load": med("validation_over_load", 3),
            "bare_copy_rows_per_s": round(rows / med("bare_copy_seconds", 4)),
            "cxloop_rows_per_s": round(rows / med("validate_load_seconds", 4)),
            "per_round": [{k: round(v, 3) for k, v in x.items()} for x in per_round],
            "rows_loaded": rows, "one_unparseable_value": parse_fallback}


def bench_landmark_stage(wh, truth_dir: Path) -> dict:
    """The pipeline's churn stage on the demo: its backtest next to tenure alone and the oracle.

    The oracle is the generator's true 90-day risk (``_truth/``) of the same customers on the
    backtest landmark, so the three concordances are on identical rows. The landmark
    backtest needs about 180 days of history (a landmark 90 days back and observations
    before it); with less the stage says so and the figures are absent.
    """
    import numpy as np
    import pandas as pd
    from lifelines.utils import concordance_index

    from flows import churn

    with wh.transaction() as cur:
        cur.execute("select max(observation_date) from intermediate.int_churn_observations")
        now = cur.fetchone()[0]
    t0 = time.perf_counter()
    res = churn.run_churn(wh, now, force=True)
    out: dict = {"stage_seconds": round(time.perf_counter() - t0, 2), "note": res.note,
                 "scored": res.scored, "model": res.model_version}
    bt = res.metrics.get("backtest")
    if not bt:
        return out
    lm_date = bt["landmark_date"]
    lm = wh.read_frame("select customer_id, tenure_days, churned_on from "
                       "intermediate.int_churn_observations where observation_date = %s",
                       (lm_date,))
    truth = json.loads((truth_dir / "truth.json").read_text())["hazard_model"]["baseline"]
    cust = pd.read_parquet(truth_dir / "customers.parquet")[["customer_id", "risk_score"]]
    lm = lm.merge(cust, on="customer_id")
    days = (pd.to_datetime(lm["churned_on"]) - pd.Timestamp(lm_date)).dt.days.to_numpy(float)
    follow = bt["followed_days"]
    event = ~np.isnan(days) & (days <= follow)
    t = np.where(event, days, follow)
    ten = lm["tenure_days"].to_numpy(float)
    k, lam = truth["k"], truth["lam"]
    true_p = 1 - np.exp(-(((ten + follow) / lam) ** k - (ten / lam) ** k) * lm["risk_score"])
    out.update({
        "backtest_landmark": lm_date, "backtest_customers": int(len(lm)),
        "backtest_concordance": bt["model_raw"]["concordance"],
        "tenure_only_concordance": bt["baselines"]["tenure_only_km"]["concordance"],
        "oracle_concordance": float(concordance_index(t, -true_p, event)),
        "top_decile_capture": bt["model_raw"]["top_decile_capture"],
        "calibration_max_gap_90_cross_fitted":
            bt["model_calibrated_cross_fitted"]["calibration_max_gap_90"],
        "training_rows": bt["model_raw"]["training_rows"]})
    return out


def bench_churn(home: Path) -> dict:
    """Churn: the pipeline's stage on the demo, then the churn-stage time at scale.

    The scale runs (``benchmarks/churn_scale.py``) go through the pipeline's own path:
    generated demo extracts (365 days: 12 observation dates), loaded by ``backfill`` in
    30-day batches, then the observation table's dbt build and ``run_churn`` timed on
    their own. Scales come from ``CXLOOP_BENCH_CHURN_SIZES`` (comma-separated; default
    100000: at 1M the backfill that builds the inputs alone takes well over half an hour
    here, so ``CXLOOP_BENCH_CHURN_SIZES=100000,1000000`` is opt-in);
    each writes ``benchmarks/results/churn-scale-<n>x365.json`` too.
    """
    from benchmarks import churn_scale
    from flows.warehouse import open_warehouse

    out: dict = {}
    wh = open_warehouse(home)
    out["demo"] = bench_landmark_stage(wh, home / "landing" / "_truth")
    sizes = [int(x) for x in os.environ.get("CXLOOP_BENCH_CHURN_SIZES",
                                            "100000").split(",") if x.strip()]
    for n in sizes:
        path = churn_scale.main(["--customers", str(n), "--days", "365"])
        out[f"stage_{n}"] = json.loads(path.read_text())
        print(f"churn stage {n:,}: {out[f'stage_{n}']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description="cxloop benchmarks")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--ingest-rows", type=int, default=1_000_000)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--alerts-responses", type=int, default=1000,
                    help="new responses for the alerts-run measure (0: skip)")
    args = ap.parse_args(argv)
    from flows.demo import generate

    home = (args.home or Path(tempfile.mkdtemp(prefix="cxb-", dir="/tmp"))).resolve()
    result: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "customers": args.customers, "days": args.days}
    landing = home / "landing"
    t0 = time.perf_counter()
    gen = generate(landing, customers=args.customers, days=args.days, start=START, seed=7)
    result["generate"] = {"seconds": round(time.perf_counter() - t0, 2), "rows": gen.rows}
    result["pipeline"] = bench_pipeline(home, landing, args.days)
    result["churn"] = bench_churn(home)
    if args.alerts_responses:
        from benchmarks.alerts_bench import bench_alerts

        result["alerts"] = bench_alerts(home, landing, START + timedelta(days=args.days - 1),
                                        args.alerts_responses)
    if args.ingest_rows:
        result["ingest"] = bench_ingest(home, args.ingest_rows)
        from benchmarks.ingest_memory import measure

        # Peak RSS of the same batch as CSV and as Parquet, a subprocess each (target 1.2x).
        result["ingest_memory"] = measure(home, args.ingest_rows)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{args.customers}x{args.days}-{datetime.now():%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    from flows.warehouse import stop_embedded

    stop_embedded(home)
    return out


if __name__ == "__main__":
    main()
