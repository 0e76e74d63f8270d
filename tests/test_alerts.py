"""Hot alerts end to end: a detractor's file lands today, `alerts` opens a routed task and
notifies its owner at a real SMTP server (aiosmtpd) and webhook (http.server) on
127.0.0.1; re-runs send nothing twice; the nightly run keeps the task and sends digests;
a suppressed customer is never mentioned; a resolved task invites a recovery survey once.

One tiny demo (120 customers x 8 days) is backfilled once for the module (the bulk of
the default-suite cost); the test with a real nightly run on top is marked slow.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from flows import actions
from flows.config import REPO_ROOT, load_settings
from tests.notify_servers import SmtpServer, WebhookServer

pytestmark = pytest.mark.e2e

START = date(2026, 9, 1)
END = date(2026, 9, 8)
HOT = END + timedelta(days=1)  # "today": the alerts run's date folder
ROUTING = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"


@pytest.fixture(scope="module")
def loop(prefect_harness):
    from flows import pipeline
    from flows.demo import generate
    from flows.warehouse import open_warehouse, stop_embedded

    home = Path(tempfile.mkdtemp(prefix="cxl-", dir="/tmp"))
    landing = home / "landing"
    generate(landing, customers=120, days=(END - START).days + 1, start=START, seed=3)
    smtp, hook = SmtpServer(), WebhookServer()
    routing = list(csv.DictReader(open(ROUTING, encoding="utf-8")))
    people = sorted({r["owner_person"] for r in routing} | {r["escalation_owner"] for r in routing})
    teams = sorted({r["owner_team"] for r in routing})
    contacts = home / "owner_contacts.csv"
    with open(contacts, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["owner", "channel", "address"])
        w.writerows([(p, "email", f"{p}@test.example") for p in people])
        w.writerows([(t, "webhook", hook.url(f"/team/{t}")) for t in teams])
        w.writerows([(t, "pager", "555-0100") for t in teams])  # bad input: a line, a row
    config = home / "cxloop.yml"
    config.write_text(yaml.safe_dump({
        "home": str(home), "landing": str(landing),
        "reference": {"owner_contacts": str(contacts)},
        "alerts": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "from": "cxloop@test.example"},
                   "retry_delay_seconds": 0.05, "outbound": str(home / "outbound"),
                   "max_immediate_per_owner_per_hour": 1},
    }))
    saved = {k: os.environ.get(k) for k in ("CXLOOP_HOME", "CXLOOP_WAREHOUSE_URL")}
    os.environ["CXLOOP_HOME"] = str(home)
    os.environ.pop("CXLOOP_WAREHOUSE_URL", None)
    try:
        summary = pipeline.backfill(start=START, end=END, config=str(config))
        assert summary["status"] == "completed", summary
        yield {"home": home, "landing": landing, "config": config, "smtp": smtp, "hook": hook,
               "wh": open_warehouse(home)}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        smtp.stop()
        hook.stop()
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


def _one(wh, sql: str, params: tuple = ()) -> list[tuple]:
    with wh.transaction() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _pick_customers(wh) -> tuple[dict, dict, dict]:
    """Two consenting customers routed to the same owner and one who must not be contacted,
    none with a contact task yet."""
    rows = _one(wh, """select customer_id, coalesce(marketing_consent, false), region, segment
                       from marts.dim_customers c where is_current and not exists (
                         select 1 from ops.improvement_tasks t
                         where t.subject_id = c.customer_id and t.is_contact)
                       order by customer_id""")
    router = actions.Router(ROUTING)
    route = {r[0]: router.route("customer", r[2], r[3]).owner_person for r in rows}
    yes = [r for r in rows if r[1]]
    first = yes[0]
    second = next(r for r in yes[1:] if route[r[0]] == route[first[0]])
    no = next(r for r in rows if not r[1])
    return tuple({"id": r[0], "region": r[2], "segment": r[3]} for r in (first, second, no))


def _drop_detractors(landing: Path, customers: list[str], name: str) -> Path:
    folder = landing / "survey" / "responses" / HOT.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["response_id", "invitation_id", "customer_id", "survey_type",
                    "touchpoint_code", "invited_at", "responded_at", "nps", "csat", "ces",
                    "overall_satisfaction", "likelihood_to_renew", "comment", "comment_language"])
        for i, c in enumerate(customers):
            w.writerow([f"RHOT{name[:4]}{i}", f"VHOT{name[:4]}{i}", c, "transactional", "billing",
                        f"{HOT} 08:00:00", f"{HOT} 09:1{i}:00", 2, 1, 6, 2, 1,
                        "Billed twice and nobody called back", "en"])
    return path


def _task(wh, customer: str) -> dict:
    rows = _one(wh, "select task_id, status, owner_team, owner_person, suppressed_reason, "
                    "created_run_id, natural_key from ops.improvement_tasks "
                    "where rule = 'detractor_follow_up' and subject_id = %s", (customer,))
    assert len(rows) == 1, rows
    keys = ("task_id", "status", "owner_team", "owner_person", "suppressed_reason",
            "created_run_id", "natural_key")
    return dict(zip(keys, rows[0], strict=True))


def _sent(loop) -> tuple[int, int]:
    return len(loop["smtp"].inbox.messages), len(loop["hook"].posts)


def _everything_received(loop) -> str:
    mails = [f"{s}\n{b}" for _, s, b in loop["smtp"].inbox.messages]
    posts = [f"{p.get('title')}\n{p.get('message')}" for _, p in loop["hook"].posts]
    return "\n".join(mails + posts)


def _hot_alert(loop, name: str) -> tuple[dict, list[dict], list[dict]]:
    """Drop two consenting detractors and one who must not be contacted into today's
    folder and run alerts: (summary, customers, their tasks)."""
    from flows.alerts import alerts_flow

    wh = loop["wh"]
    customers = _pick_customers(wh)
    _drop_detractors(loop["landing"], [c["id"] for c in customers], name)
    s = alerts_flow(run_date=HOT, config=str(loop["config"]))
    assert s["status"] == "completed", s
    assert s["batches"]["loaded"] == 1 and s["rows_loaded"] == 3
    return s, list(customers), [_task(wh, c["id"]) for c in customers]


def test_hot_alert_is_opened_routed_and_notified_once_and_digested_once(loop):
    from flows.alerts import after_nightly_tasks, alerts_flow

    wh, smtp, hook = loop["wh"], loop["smtp"], loop["hook"]
    s, (yes, yes2, no), tasks = _hot_alert(loop, "hot_0910.csv")
    assert "stg_survey__responses" in s["stages"]["dbt run"]["detail"]
    quiet = tasks[2]
    route = actions.Router(ROUTING).route("customer", yes["region"], yes["segment"])
    for t in tasks[:2]:
        assert (t["status"], t["owner_team"], t["owner_person"]) == (
            "open", route.owner_team, route.owner_person)
        assert t["created_run_id"] == s["run_id"]
    assert quiet["status"] == "suppressed" and "consent" in quiet["suppressed_reason"]
    assert _one(wh, "select flow, status from ops.pipeline_runs where run_id = %s",
                (s["run_id"],)) == [("alerts", "completed")]
    assert any("unknown channel 'pager'" in w for w in s["warnings"]), s["warnings"]
    assert _one(wh, "select count(*) from ops.notifications where channel = 'pager' "
                    "and status = 'invalid' and run_id = %s", (s["run_id"],)) == [(1,)]

    # the owner's cap is 1 an hour: one alert goes out at once, the other waits for the digest
    told = [t for t in tasks[:2] if smtp.inbox.mentioning(t["task_id"])]
    assert len(told) == 1
    hot, held = told[0], next(t for t in tasks[:2] if t is not told[0])
    # one immediate message per channel of the owner: the person's inbox, the team's webhook
    mails = smtp.inbox.mentioning(hot["task_id"])
    assert [m[0] for m in mails] == [[f"{route.owner_person}@test.example"]]
    assert "Call back detractor" in mails[0][1] and "Due: " in mails[0][2]
    posts = [p for p in hook.at(f"/team/{route.owner_team}") if hot["task_id"] in p["message"]]
    assert len(posts) == 1
    assert _one(wh, "select status, channel from ops.notifications where task_id = %s",
                (quiet["task_id"],)) == [("suppressed", None)]
    assert {r[0] for r in _one(wh, "select status from ops.notifications where task_id = %s",
                               (held["task_id"],))} == {"deferred"}
    assert _everything_received(loop).count(held["task_id"]) == 0
    customer_of = {tasks[0]["task_id"]: yes, tasks[1]["task_id"]: yes2}
    yes = customer_of[hot["task_id"]]

    before = _sent(loop)
    again = alerts_flow(run_date=HOT, config=str(loop["config"]))  # the same hour again
    assert again["batches"] == {"loaded": 0, "skipped": 1, "rejected": 0, "retried": 0}
    assert _sent(loop) == before
    assert _task(wh, yes["id"])["task_id"] == hot["task_id"]

    # the nightly hook (the plain function the nightly run calls after its tasks stage)
    settings = load_settings(loop["config"])
    warnings: list[str] = []
    after_nightly_tasks(wh, settings, HOT, "night-1", warnings)
    digests = [m for m in smtp.inbox.messages[before[0]:] if " new, " in m[1]]
    assert digests and all(m[2].startswith("cxloop digest for") for m in digests)
    assert any(p["title"].endswith("overdue") for _, p in hook.posts[before[1]:])
    (mine,) = [m for m in digests if m[0] == [f"{route.owner_person}@test.example"]]
    assert held["task_id"] in mine[2]  # held back by the cap: in the digest
    assert hot["task_id"] not in mine[2]  # told at once already: not "new" to them again
    assert len(smtp.inbox.mentioning(hot["task_id"])) == 1
    everything = _everything_received(loop)
    assert no["id"] not in everything and quiet["task_id"] not in everything

    # closing the loop: the resolved task invites a recovery survey, once
    with wh.transaction() as cur:
        cur.execute("update ops.improvement_tasks set status = 'resolved' where task_id = any(%s)",
                    ([hot["task_id"], quiet["task_id"]],))
    sent = _sent(loop)
    for _ in range(2):
        after_nightly_tasks(wh, settings, HOT, "night-2", warnings)
    assert _sent(loop) == sent  # the night's digests were sent already
    inv = loop["home"] / "outbound" / "survey" / "invitations" / HOT.isoformat() / "invitations.csv"
    rows = list(csv.DictReader(open(inv, encoding="utf-8")))
    assert [(r["customer_id"], r["task_id"], r["touchpoint_code"]) for r in rows] == [
        (yes["id"], hot["task_id"], "billing")]
    assert _one(wh, "select status, reason from ops.recovery_invitations where task_id = %s",
                (quiet["task_id"],)) == [("not_invited", "no consent to contact")]


@pytest.mark.slow
def test_the_nightly_run_keeps_the_hot_alert_and_sends_nothing_twice(loop):
    """The real nightly run after an alerts run: the batch is skipped as loaded, the task
    keeps its id, owner and status, the digest does not repeat it, nothing about the
    suppressed customer is sent."""
    from flows.pipeline import nightly

    wh, smtp = loop["wh"], loop["smtp"]
    _, (yes, _, no), (hot, _, quiet) = _hot_alert(loop, "late_1130.csv")
    before = _sent(loop)
    night = nightly(run_date=HOT, config=str(loop["config"]))
    assert night["status"] == "completed", night
    assert night["batches"]["skipped"] >= 1
    assert "digest" in night["stages"]["notifications"]["detail"]
    after = _task(wh, yes["id"])
    keys = ("task_id", "status", "owner_person", "created_run_id", "natural_key")
    assert {k: after[k] for k in keys} == {k: hot[k] for k in keys}
    assert len(smtp.inbox.mentioning(hot["task_id"])) <= 1  # at most its immediate alert
    everything = _everything_received(loop)
    assert no["id"] not in everything and quiet["task_id"] not in everything
    assert _sent(loop) > before  # the night's digests
    told = _sent(loop)
    again = nightly(run_date=HOT, config=str(loop["config"]))
    assert again["status"] == "completed"
    assert _sent(loop) == told  # the same night again: every digest already sent


def test_the_alerts_deployment_runs_on_the_configured_schedule(tmp_path, monkeypatch):
    from prefect.utilities.templating import apply_values

    from flows.cli import deployment_env

    path = tmp_path / "cxloop.yml"
    path.write_text(yaml.safe_dump({"alerts": {"schedule": "*/30 * * * *"}}))
    for k, v in deployment_env(load_settings(path)).items():
        monkeypatch.setenv(k, v)
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    rendered = apply_values(spec, os.environ, remove_notset=False)
    dep = next(d for d in rendered["deployments"] if d["name"] == "alerts")
    assert dep["schedules"][0]["cron"] == "*/30 * * * *"
    assert dep["entrypoint"] == "flows/alerts.py:alerts_flow"
    assert dep["parameters"]["config"] == str(path.resolve())
