"""The alerts run on a batch of new responses: run time and file-to-notification latency.

Against a backfilled demo warehouse, writes one file of ``responses`` detractor answers
(1,000 by default) into the next day's landing folder, runs ``flows.alerts.run_alerts``
with real local receivers (aiosmtpd and an HTTP webhook on 127.0.0.1), and records the
run's wall time per stage and the seconds from the file being written to the first and
last notification received. Under a schedule the latency adds at most one interval.

    python -m benchmarks.alerts_bench --customers 20000 --days 60 [--responses 1000]
    python -m benchmarks.alerts_bench --home H --end 2025-12-31 --customers 1000000 --days 365

``benchmarks/run.py`` calls ``bench_alerts`` after its backfill (``--alerts-responses``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")
# The temporary Prefect server may take longer than its 20 s default on a busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

RESULTS = Path(__file__).resolve().parent / "results"
START = date(2026, 7, 1)
HEADER = ["response_id", "invitation_id", "customer_id", "survey_type", "touchpoint_code",
          "invited_at", "responded_at", "nps", "csat", "ces", "overall_satisfaction",
          "likelihood_to_renew", "comment", "comment_language"]


def bench_alerts(home: Path, landing: Path, end: date, responses: int = 1000) -> dict:
    """One alerts run over ``responses`` new detractor answers dated ``end + 1``."""
    import yaml

    from flows import actions, alerts
    from flows.config import REPO_ROOT, load_settings
    from flows.warehouse import open_warehouse
    from tests.notify_servers import SmtpServer, WebhookServer

    smtp, hook = SmtpServer(), WebhookServer()
    received = hook.received_at  # the moment each webhook message arrived
    routing = list(csv.DictReader(open(REPO_ROOT / "dbt_project/seeds/owner_routing.csv")))
    contacts = home / "bench_contacts.csv"
    with open(contacts, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["owner", "channel", "address"])
        for p in sorted({r["owner_person"] for r in routing} | {r["escalation_owner"] for r in routing}):
            w.writerow([p, "email", f"{p}@bench.example"])
        for t in sorted({r["owner_team"] for r in routing}):
            w.writerow([t, "webhook", hook.url(f"/team/{t}")])
    config = home / "bench_alerts.yml"
    config.write_text(yaml.safe_dump({
        "home": str(home), "landing": str(landing),
        "reference": {"owner_contacts": str(contacts)},
        "alerts": {"smtp": {"host": "127.0.0.1", "port": smtp.port}, "retry_delay_seconds": 0.1},
    }))
    settings = load_settings(config)
    wh = open_warehouse(home)
    with wh.transaction() as cur:
        # a re-run on the same warehouse starts from an hour with no alerts sent (the cap);
        # the escalation notices an earlier run recorded stay, as they would for an hourly
        # run (the first run after a backfill records its breaches once)
        cur.execute("delete from ops.notifications where run_id like 'alerts-%%' "
                    "and message_key like 'alert|%%'")
        cur.execute("select count(*) from marts.dim_customers where is_current")
        n_customers = cur.fetchone()[0]
        # customers without a hot-alert task yet (a re-run must open new ones)
        realtime = [r.name for r in actions.load_rules(settings.tasks).rules if r.realtime]
        cur.execute("select customer_id from marts.dim_customers c where is_current "
                    "and not exists (select 1 from ops.improvement_tasks t where "
                    "t.subject_id = c.customer_id and t.rule = any(%s)) "
                    "order by md5(customer_id) limit %s", (realtime, responses))
        ids = [r[0] for r in cur.fetchall()]
    day = end + timedelta(days=1)
    folder = landing / "survey" / "responses" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    stamp = f"{datetime.now():%H%M%S}"  # a re-run on the same warehouse: new answers
    t_file = time.time()
    with open(folder / f"hot_{stamp}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(responses):
            w.writerow([f"RB{stamp}{i:07d}", f"VB{stamp}{i:07d}", ids[i % len(ids)], "transactional",
                        rng.choice(["billing", "support_call", "installation"]),
                        f"{day} 08:00:00", f"{day} 09:{i % 60:02d}:00", rng.randint(0, 6),
                        rng.randint(1, 2), rng.randint(5, 7), rng.randint(1, 4), 1,
                        "Nobody called me back", "en"])
    t0 = time.perf_counter()
    s = alerts.run_alerts(settings, day)
    wall = time.perf_counter() - t0
    time.sleep(0.5)
    with wh.transaction() as cur:
        cur.execute("select status, count(*) from ops.notifications where run_id = %s "
                    "group by status order by status", (s.run_id,))
        statuses = dict(cur.fetchall())
    smtp.stop()
    hook.stop()
    return {
        "warehouse_customers": n_customers, "new_responses": responses,
        "alerts_run_seconds": round(wall, 2), "status": s.status, "tasks": s.tasks,
        "stages": s.stages, "notifications": statuses,
        "messages_received": {"smtp": len(smtp.inbox.messages), "webhook": len(received)},
        "file_to_first_notification_seconds":
            round(min(received) - t_file, 2) if received else None,
        "file_to_last_notification_seconds":
            round(max(received) - t_file, 2) if received else None,
        "schedule": settings.alerts.schedule,
        "note": "latency under the schedule = up to one interval + file_to_last_notification",
    }


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description="cxloop alerts benchmark")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--responses", type=int, default=1000)
    ap.add_argument("--home", type=Path, default=None,
                    help="a backfilled home to run against (else a new one is generated)")
    ap.add_argument("--end", type=date.fromisoformat, default=None,
                    help="the home's last loaded date (default: the generated range's end); "
                         "the new answers are dated the day after")
    args = ap.parse_args(argv)
    from flows import pipeline
    from flows.demo import generate
    from flows.warehouse import stop_embedded

    home = (args.home or Path(tempfile.mkdtemp(prefix="cxb-", dir="/tmp"))).resolve()
    landing = home / "landing"
    end = args.end or START + timedelta(days=args.days - 1)
    os.environ["CXLOOP_HOME"] = str(home)
    result: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                    "customers": args.customers, "days": args.days}
    if not (home / "pgdata").exists():
        t0 = time.perf_counter()
        generate(landing, customers=args.customers, days=args.days, start=START, seed=7)
        summary = pipeline.backfill(start=START, end=end, landing=str(landing))
        result["backfill_seconds"] = round(time.perf_counter() - t0, 2)
        result["backfill_status"] = summary["status"]
    result["alerts"] = bench_alerts(home, landing, end, args.responses)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"alerts-{args.customers}x{args.days}-{datetime.now():%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    stop_embedded(home)
    return out


if __name__ == "__main__":
    main()
