"""``make bench-scale``: the adoption workload at full size, one number per stage.

A company adopting cxloop backfills a year and then runs nightly. This benchmark runs
exactly that on demo data (1,000,000 customers x 365 days by default; 35.7M rows in
2,555 files) through the product's own CLI, each step in its own process so its peak
RSS is its own:

1. ``cxloop demo generate`` of ``days + 1`` days (the last one is the nightly's);
2. ``cxloop backfill`` of the first ``days`` days: per-stage seconds (the run summary),
   wall time, peak RSS of the process;
3. ``cxloop run --date <day after>``: one nightly day with new data on that history,
   then the same night again with nothing new (what a re-run or a quiet night costs);
   for the backfill and both nights, the dbt models and tests over 5 s, from dbt's log
   (``benchmarks/dbt_nodes.py``);
4. a bare ``COPY`` of the same backfill files into plain tables on the same server, in
   the same run (``benchmarks/copy_baseline.py``), next to cxloop's validate+load rows/s;
5. issue 15's checks on that warehouse: open customer tasks per owner team against its
   capacity, the backlog's order, every detractor call-back opened; then one alerts run
   over 1,000 new detractor answers (``benchmarks/alerts_bench.py``).

Writes ``benchmarks/results/scale-<customers>x<days>-<timestamp>.json`` and prints it.
Targets at 1M x 365 on the reference 2-core machine: backfill <= 300 s, nightly day
<= 60 s, peak RSS <= 2 GB, validate+load >= 0.5x bare COPY, alerts run <= 30 s.

    python -m benchmarks.scale --customers 1000000 --days 365 [--home H] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.dbt_nodes import LogMark, node_seconds
from benchmarks.dbt_nodes import summary as dbt_summary

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
START = date(2025, 1, 1)
TARGETS = {"backfill_seconds": 300, "nightly_seconds": 60, "peak_rss_mb": 2048,
           "load_vs_bare_copy": 0.5, "alerts_run_seconds": 30}


def cli(home: Path, *args: str) -> dict[str, Any]:
    """One ``cxloop`` command in its own process: wall seconds, peak RSS (MB) and, for a
    run, the summary it prints with ``--json``. The process's peak RSS is its own (the
    Prefect server it starts is a separate process; Postgres is the server's)."""
    env = {**os.environ, "CXLOOP_HOME": str(home), "PYTHONPATH": str(REPO),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "flows", *args], cwd=home, env=env,
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    result: dict[str, Any] = {"command": "cxloop " + " ".join(args), "exit_code": proc.returncode,
                              "wall_seconds": round(wall, 1),
                              "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    if "--json" in args:
        try:
            result["summary"] = json.loads(stdout[stdout.index("{"):])
        except ValueError:
            result["stdout_tail"] = stdout[-2000:]
    if proc.returncode:
        result["stderr_tail"] = stderr[-3000:]
    return result


def _per_stage(run: dict[str, Any], key: str) -> dict[str, float]:
    return {k: v.get(key) for k, v in run.get("summary", {}).get("stages", {}).items()}


def stages(run: dict[str, Any]) -> dict[str, float]:
    return _per_stage(run, "seconds")


def stage_peaks(run: dict[str, Any]) -> dict[str, float]:
    """The process's peak RSS (MB) after each stage: the first stage whose figure jumps
    is the one that raised it."""
    return _per_stage(run, "peak_rss_mb")


def stage_rss_after(run: dict[str, Any]) -> dict[str, float]:
    """The process's RSS (MB) after each stage, once it handed back what the stage freed
    (``flows.memory.release``): what the next stage starts from."""
    return _per_stage(run, "rss_mb_after")


def capacity_check(home: Path) -> dict[str, Any]:
    """Issue 15 on this warehouse: no team's open customer tasks above its capacity, the
    backlog in priority order, every call-back of a rule without capacity opened."""
    from flows.actions import OPEN_STATUSES, load_rules
    from flows.config import load_settings
    from flows.warehouse import open_warehouse

    settings = load_settings(None, home=str(home))
    rules = load_rules(settings.tasks)
    wh = open_warehouse(home)
    classes = {r.name: r.capacity_class for r in rules.rules if r.subject == "customer"}
    with wh.transaction() as cur:
        cur.execute("select owner_team, rule_class, capacity from staging.owner_capacity")
        caps = {(t, c): n for t, c, n in cur.fetchall()}
        cur.execute("select owner_team, rule, count(*) from ops.improvement_tasks "
                    "where status = any(%s) and rule = any(%s) group by 1, 2",
                    (list(OPEN_STATUSES), list(classes)))
        open_by = cur.fetchall()
        cur.execute("select count(*) from ops.task_backlog")
        backlog = cur.fetchone()[0]
        uncapped = sorted({r for r, c in classes.items() if not any(cc == c for _, cc in caps)})
        # a rule with no capacity row (the call-backs) opens every candidate: none waits
        cur.execute("select count(*) from ops.task_backlog where rule = any(%s)", (uncapped,))
        uncapped_waiting = cur.fetchone()[0]
        # the backlog mart's order follows priority within each rule and team
        cur.execute("""select count(*) from (
                         select priority_score, lag(priority_score) over (
                           partition by owner_team, rule_class order by team_rank) as before
                         from marts.mart_task_backlog) b
                       where b.before < b.priority_score""")
        out_of_order = cur.fetchone()[0]
    teams: dict[str, dict[str, Any]] = {}
    for team, rule, n in open_by:
        cls = classes[rule]
        cap = caps.get((team, cls), caps.get(("*", cls)))
        row = teams.setdefault(f"{team}/{cls}", {"open": 0, "capacity": cap})
        row["open"] += n
    over = {k: v for k, v in teams.items() if v["capacity"] is not None
            and v["open"] > v["capacity"]}
    return {"open_customer_tasks": teams, "teams_over_capacity": over,
            "backlog_rows": backlog, "backlog_out_of_priority_order": out_of_order,
            "rules_without_capacity": uncapped,
            "backlog_rows_of_rules_without_capacity": uncapped_waiting}


def bare_copy_side_by_side(home: Path, landing: Path, start: date, end: date,
                           loaded_rows: int, load_seconds: float) -> dict[str, Any]:
    """Bare COPY of the same files on the same server, right after cxloop's load."""
    try:
        from benchmarks.copy_baseline import bare_copy
    except ImportError as e:  # the baseline ships with the load benchmark
        return {"skipped": f"benchmarks.copy_baseline not available ({e})"}
    from flows.warehouse import open_warehouse

    bare = bare_copy(open_warehouse(home), landing, start, end)
    ours = loaded_rows / load_seconds if load_seconds else None
    return {"bare_copy": bare, "cxloop_validate_load_rows_per_s": round(ours or 0),
            "load_vs_bare_copy": round(ours / bare["rows_per_s"], 3) if ours else None}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description="cxloop at full size: backfill, nightly, "
                                 "bare COPY, capacity and alerts checks")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--home", type=Path, default=None,
                    help="work folder (default: a new one under /tmp, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--alerts-responses", type=int, default=1000)
    args = ap.parse_args(argv)
    home = (args.home or Path(tempfile.mkdtemp(prefix="cxscale-", dir="/tmp"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    landing = home / "landing"
    end = START + timedelta(days=args.days - 1)
    night = end + timedelta(days=1)
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "customers": args.customers, "days": args.days, "targets": TARGETS}
    t_all = time.perf_counter()
    try:
        res["generate"] = cli(home, "demo", "generate", "--out", str(landing), "--customers",
                              str(args.customers), "--days", str(args.days + 1),
                              "--start", START.isoformat())
        logs = home / "dbt" / "logs"
        mark = LogMark.of(logs)
        bf = cli(home, "backfill", "--start", START.isoformat(), "--end", end.isoformat(),
                 "--landing", str(landing), "--json")
        summary = bf.get("summary", {})
        res["backfill"] = {**{k: v for k, v in bf.items() if k != "summary"},
                           "status": summary.get("status"), "stages": stages(bf),
                           "stage_peak_rss_mb": stage_peaks(bf),
                           "stage_rss_after_mb": stage_rss_after(bf),
                           "rows_loaded": summary.get("rows_loaded"),
                           "batches": summary.get("batches"),
                           "dbt_nodes": dbt_summary(node_seconds(logs, mark))}
        print(json.dumps(res["backfill"], default=str), flush=True)
        for key, label in (("nightly", "new day"), ("nightly_again", "nothing new")):
            mark = LogMark.of(logs)
            run = cli(home, "run", "--date", night.isoformat(), "--landing", str(landing),
                      "--json")
            res[key] = {**{k: v for k, v in run.items() if k != "summary"}, "what": label,
                        "status": run.get("summary", {}).get("status"),
                        "stages": stages(run), "stage_peak_rss_mb": stage_peaks(run),
                        "stage_rss_after_mb": stage_rss_after(run),
                        "rows_loaded": run.get("summary", {}).get("rows_loaded"),
                        "dbt_nodes": dbt_summary(node_seconds(logs, mark))}
            print(json.dumps(res[key], default=str), flush=True)
        load_s = res["backfill"]["stages"].get("validate+load") or 0
        res["load"] = bare_copy_side_by_side(home, landing, START, end,
                                             res["backfill"]["rows_loaded"] or 0, load_s)
        res["capacity"] = capacity_check(home)
        if args.alerts_responses:
            from benchmarks.alerts_bench import bench_alerts

            res["alerts"] = bench_alerts(home, landing, night, args.alerts_responses)
        res["verdict"] = verdict(res)
    finally:
        res["total_seconds"] = round(time.perf_counter() - t_all, 1)
        from flows.warehouse import stop_embedded

        stop_embedded(home)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / (f"scale-{args.customers}x{args.days}-"
                         f"{datetime.now():%Y%m%dT%H%M%S}.json")
        out.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(json.dumps(res, indent=2, default=str))
        print(f"wrote {out}")
        if not (args.keep or args.home):
            shutil.rmtree(home, ignore_errors=True)
    return out


def verdict(res: dict[str, Any]) -> dict[str, Any]:
    """Each target next to what was measured (``met`` is None when a figure is absent).
    Seconds are the commands' wall time, Prefect's start-up included."""
    measured = {
        "backfill_seconds": res["backfill"]["wall_seconds"],
        "nightly_seconds": res["nightly"]["wall_seconds"],
        "peak_rss_mb": max(res["backfill"]["peak_rss_mb"], res["nightly"]["peak_rss_mb"]),
        "load_vs_bare_copy": res.get("load", {}).get("load_vs_bare_copy"),
        "alerts_run_seconds": res.get("alerts", {}).get("alerts_run_seconds"),
    }
    higher_is_better = {"load_vs_bare_copy"}
    return {k: {"measured": v, "target": TARGETS[k],
                "met": None if v is None else (v >= TARGETS[k] if k in higher_is_better
                                               else v <= TARGETS[k])}
            for k, v in measured.items()}


if __name__ == "__main__":
    main()
