"""One stage function of a backfilled home, in a process of its own: its peak RSS, its time.

The run summary says which stage raised a run's peak; this says what one piece of that
stage costs alone, on the same warehouse (e.g. bench-scale's 1M x 365 home, kept with
``--keep``). Nothing is written to the warehouse: each probe rolls back or writes only
what the stage itself would write again.

    python -m benchmarks.stage_probe --home H titles      # right after a backfill
    python -m benchmarks.stage_probe --home H drivers     # run_drivers (rewrites its table)
    python -m benchmarks.stage_probe --home H refit       # fit_landmark_model, not registered
    python -m benchmarks.stage_probe --home H escalation [--days 90] [--unbounded]
    python -m benchmarks.stage_probe --home H model --model int_churn_observations \
        --end 2026-01-01 [--rounds 2]

``model`` compiles one dbt model for the run date ``--end`` and times ``create temp table
as`` its select with the configured ``dbt_work_mem``, ``--rounds`` times in one session
(rolled back): what the model costs alone, and how much two runs of it differ here.
``escalation`` marks every task unescalated and escalates ``--days`` dates in one rolled
back transaction, as a backfill's range does, with or without the ``due_from`` bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flows import memory


def titles(home: Path, start: date, end: date) -> dict[str, Any]:
    """``stage_candidates`` of each look-back rule over the range (the titles included)."""
    from flows.actions import load_rules
    from flows.actions.derive import candidate_dates, stage_candidates
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    rules = load_rules(load_settings(None, home=str(home)).tasks)
    conn = open_warehouse(home).connect()
    out: dict[str, Any] = {}
    try:
        with conn.cursor() as cur:
            # a nightly run after the backfill rebuilds the candidates for its date alone
            out["candidates_built_for"] = [str(d) for d in candidate_dates(cur) or ()]
            for rule in rules.rules:
                if rule.backfill == "each_date":
                    t0 = time.perf_counter()
                    n = stage_candidates(cur, rule, rules, start, end)
                    out[rule.name] = {"candidates": n,
                                      "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        conn.rollback()
        conn.close()
    return out


def drivers(home: Path) -> dict[str, Any]:
    """``run_drivers``, and the rows its SQL sample reads."""
    from psycopg2 import sql

    from flows import drivers as stage
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    settings = load_settings(None, home=str(home))
    wh = open_warehouse(home)
    t0 = time.perf_counter()
    n = stage.run_drivers(wh, settings)
    seconds = round(time.perf_counter() - t0, 1)
    dims = stage.segment_dimensions(settings)
    query = stage.sample_query(["response_id"], list(dims))
    with wh.transaction() as cur:
        cur.execute(sql.SQL("select count(*) from ({}) as s").format(query),
                    {"cap": settings.quadrant.max_responses})
        sampled = cur.fetchone()[0]
    return {"importance_rows": n, "sample_rows": sampled, "seconds": seconds}


def refit(home: Path) -> dict[str, Any]:
    """Read the history, type it, release, then ``fit_landmark_model`` (not registered)."""
    from flows.churn.backtest import LandmarkConfig
    from flows.churn.observations import prepare
    from flows.churn.reading import observation_bounds, read_history
    from flows.churn.stage import fit_landmark_model
    from flows.warehouse import open_warehouse

    wh = open_warehouse(home)
    _, _, now = observation_bounds(wh)
    cfg = LandmarkConfig()
    obs = prepare(read_history(wh, now, cfg.max_rows))
    memory.release()
    base = memory.rss_mb()
    t0 = time.perf_counter()
    model, _, _ = fit_landmark_model(obs, now, cfg, None, None)
    return {"rows": len(obs.frame), "rss_before_fit_mb": base,
            "seconds": round(time.perf_counter() - t0, 1),
            "heldout_concordance": model.metrics["heldout_concordance"]}


def escalation(home: Path, days: int, bounded: bool) -> dict[str, Any]:
    """Escalate ``days`` dates in one transaction, rolled back; milliseconds per date."""
    from flows.actions.rules import as_of_for
    from flows.actions.upkeep import escalate
    from flows.warehouse import open_warehouse

    conn = open_warehouse(home).connect()
    per_date = []
    try:
        with conn.cursor() as cur:
            cur.execute("select min(created_at)::date from ops.improvement_tasks")
            first = cur.fetchone()[0] + timedelta(days=2)
            cur.execute("update ops.improvement_tasks set escalated_due_at = null, "
                        "escalation_level = 0 where escalated_due_at is not null")
            for k in range(days):
                d = first + timedelta(days=k)
                since = as_of_for(d - timedelta(days=1)) if bounded and k else None
                t0 = time.perf_counter()
                n = escalate(cur, as_of_for(d), "stage-probe", since)
                per_date.append((str(d), n, round((time.perf_counter() - t0) * 1000)))
    finally:
        conn.rollback()
        conn.close()
    return {"bounded": bounded, "escalated": sum(n for _, n, _ in per_date),
            "ms_total": sum(ms for *_, ms in per_date),
            "ms_by_date": per_date[::max(1, days // 6)] + per_date[-1:]}


def model(home: Path, name: str, run_date: date, rounds: int) -> dict[str, Any]:
    """Seconds of ``create temp table as`` the model's compiled select, each round."""
    from flows import transform
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    settings = load_settings(None, home=str(home))
    wh = open_warehouse(home, url=settings.warehouse_url, migrate_schema=False)
    with contextlib.redirect_stdout(sys.stderr):  # dbt compile prints the SQL: not ours
        outcome = transform.run_dbt(wh, settings, ["compile", "--select", name], run_date)
    compiled = [p for p in (home / "dbt" / "target" / "compiled").rglob(f"{name}.sql")
                if not p.parent.name.endswith(".yml")]  # not a unit test's fixture
    if not outcome.success or len(compiled) != 1:
        raise SystemExit(f"could not compile {name}: {outcome.failures or compiled}")
    query = compiled[0].read_text()
    conn = wh.connect()
    seconds, rows = [], 0
    try:
        with conn.cursor() as cur:
            if settings.dbt_work_mem:
                cur.execute("select set_config('work_mem', %s, true)", (settings.dbt_work_mem,))
            for k in range(rounds):
                t0 = time.perf_counter()
                cur.execute(f"create temp table stage_probe_{k} as {query}")
                seconds.append(round(time.perf_counter() - t0, 1))
                rows = cur.rowcount
    finally:
        conn.rollback()
        conn.close()
    return {"model": name, "run_date": str(run_date), "rows": rows, "seconds": seconds,
            "work_mem": settings.dbt_work_mem}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a backfilled cxloop home")
    ap.add_argument("probe", choices=["titles", "drivers", "refit", "escalation", "model"])
    ap.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1),
                    help="titles: the range's first date")
    ap.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 30),
                    help="titles: the range's last date; model: the run date")
    ap.add_argument("--days", type=int, default=90, help="escalation: dates in the range")
    ap.add_argument("--unbounded", action="store_true",
                    help="escalation: without the due_from bound")
    ap.add_argument("--model", default="int_churn_observations",
                    help="model: the dbt model to build alone")
    ap.add_argument("--rounds", type=int, default=2, help="model: builds in one session")
    a = ap.parse_args(argv)
    start_rss = memory.rss_mb()
    if a.probe == "titles":
        res = titles(a.home, a.start, a.end)
    elif a.probe == "drivers":
        res = drivers(a.home)
    elif a.probe == "refit":
        res = refit(a.home)
    elif a.probe == "model":
        res = model(a.home, a.model, a.end, a.rounds)
    else:
        res = escalation(a.home, a.days, not a.unbounded)
    out = {"probe": a.probe, **res, "rss_at_start_mb": start_rss,
           "peak_rss_mb": memory.peak_rss_mb()}
    print(json.dumps(out, default=str))
    return out


if __name__ == "__main__":
    main()
