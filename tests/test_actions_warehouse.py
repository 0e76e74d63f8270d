"""Improvement tasks against a real warehouse: the demo pipeline once, then derive_tasks directly.

The pipeline runs once per module (600 customers x 60 days, ~30 s); every test then
gets its own copy of that database (CREATE DATABASE ... TEMPLATE, well under a second)
with the tasks the pipeline wrote removed, so tests can edit and re-run freely.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from flows import actions
from flows.config import REPO_ROOT
from flows.warehouse import Warehouse

pytestmark = pytest.mark.e2e

START = date(2026, 7, 1)
END = date(2026, 9, 28)  # 90 days: enough churn events for the model to fit
BACKFILL_FROM = END - timedelta(days=29)  # 30 run dates
ROUTING = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"


@pytest.fixture(scope="module")
def demo_warehouse(prefect_harness) -> tuple[Warehouse, Path]:
    """The whole pipeline once over the demo data; returns its warehouse and landing."""
    from flows import pipeline
    from flows.demo import generate
    from flows.warehouse import open_warehouse, stop_embedded

    # Short path under /tmp, as conftest does: socket paths are limited to ~107 bytes and
    # the embedded server must be able to enter the folder.
    home = Path(tempfile.mkdtemp(prefix="cxa-", dir="/tmp"))
    landing = home / "landing"
    generate(landing, customers=1000, days=90, start=START, seed=7)
    saved = {k: os.environ.get(k) for k in ("CXLOOP_HOME", "CXLOOP_WAREHOUSE_URL")}
    os.environ["CXLOOP_HOME"] = str(home)
    os.environ.pop("CXLOOP_WAREHOUSE_URL", None)
    try:
        summary = pipeline.backfill(start=START, end=END, landing=str(landing))
        assert summary["status"] == "completed", summary
        # every stage that ran records the process's peak memory so far (MB, never falling)
        ran = [st for st in summary["stages"].values() if not st.get("skipped")]
        peaks = [st["peak_rss_mb"] for st in ran]
        assert peaks and peaks[0] > 0 and peaks == sorted(peaks)
        # ... and what it holds after handing back what the stage freed
        assert all(0 < st["rss_mb_after"] <= st["peak_rss_mb"] for st in ran)
        wh = open_warehouse(home)
        yield wh, landing
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture()
def wh(demo_warehouse) -> Warehouse:
    """A private copy of the demo warehouse without tasks."""
    base, _ = demo_warehouse
    name = "a_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(base.url.replace("/cxloop?", "/postgres?"))
    admin.autocommit = True
    with admin.cursor() as cur:
        # A template must have no other sessions (the pipeline's cached GX engine may hold one).
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = 'cxloop' and pid <> pg_backend_pid()")
        cur.execute(sql.SQL("create database {} template cxloop").format(sql.Identifier(name)))
    wh = Warehouse(url=base.url.replace("/cxloop?", f"/{name}?"), pgdata=base.pgdata)
    with wh.transaction() as c:
        c.execute("delete from ops.improvement_task_events; delete from ops.improvement_tasks")
    yield wh
    with admin.cursor() as cur:
        cur.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
    admin.close()


@pytest.fixture(scope="module")
def rules() -> actions.RuleSet:
    return actions.load_rules(REPO_ROOT / "tasks.yml")


@pytest.fixture(scope="module")
def router() -> actions.Router:
    return actions.Router(ROUTING)


def _q(wh: Warehouse, query: str, params: Any = None) -> list[tuple]:
    with wh.transaction() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def _tasks(wh: Warehouse) -> list[tuple]:
    """Every task with the fields a re-run must not change."""
    return _q(wh, "select task_id, natural_key, status, assignee, notes, priority, owner_person, "
                  "evidence::text, due_at, escalation_level, condition_active, updated_at "
                  "from ops.improvement_tasks order by task_id")


CANDIDATE_DEFAULTS = {
    "as_of_date": "(select max(as_of_date) from intermediate.int_task_dates)",
    "subject_id": "null", "period": "null", "routing_key": "'customer'", "region": "null",
    "segment": "null", "owner_team": "'cx_office'", "owner_person": "'cx.duty.manager'",
    "escalation_owner": "'head.of.cx'", "routed_to_fallback": "false",
    "marketing_consent": "null", "value_at_risk": "null", "priority_score": "0",
    "priority_reason": "null", "evidence": "'{}'",
}
TYPES = {"as_of_date": "date", "routed_to_fallback": "boolean", "marketing_consent": "boolean",
         "value_at_risk": "numeric(14, 2)", "priority_score": "double precision",
         "evidence": "jsonb"}


def _candidates_view(wh: Warehouse, rule: str, tail: str = "", params: Any = None,
                     **columns: str) -> None:
    """A rule's candidate model, as a view with the contract's columns (a test's own rule)."""
    cols = ", ".join(f"cast({columns.get(c, d)} as {TYPES.get(c, 'text')}) as {c}"
                     for c, d in CANDIDATE_DEFAULTS.items())
    with wh.transaction() as cur:
        view = sql.Identifier("intermediate", f"int_task_candidates__{rule}")
        body = cur.mogrify(f"select {cols} {tail}", params).decode()
        cur.execute(sql.SQL("create or replace view {} as ").format(view) + sql.SQL(body))


def _backfill(wh: Warehouse, rules, router, start: date = BACKFILL_FROM, days: int = 30,
              prefix: str = "bf") -> list[actions.TaskStats]:
    return [actions.derive_tasks(wh, rules, router, start + timedelta(days=i), f"{prefix}-{i}")
            for i in range(days)]


def test_every_shipped_rule_fires_on_demo_data(wh, rules, router):
    fired: dict[str, int] = {}
    for s in _backfill(wh, rules, router):
        for name, n in s.by_rule.items():
            fired[name] = fired.get(name, 0) + n
    assert all(fired[r.name] > 0 for r in rules.rules), fired
    # touchpoint rules open tasks; customer rules open at least one that is not suppressed
    open_by_rule = dict(_q(wh, "select rule, count(*) from ops.improvement_tasks "
                               "where status = 'open' group by rule"))
    for r in ("fix_first_touchpoint", "below_expectation_streak", "detractor_follow_up",
              "high_value_retention"):
        assert open_by_rule.get(r, 0) > 0, open_by_rule


def test_same_date_twice_gives_the_same_tasks_and_no_new_events(wh, rules, router):
    # the intra-day alerts run opens the realtime rules' tasks only, clearing nothing ...
    hot = actions.derive_tasks(wh, rules, router, END, "alerts", only_realtime=True)
    realtime = {r.name for r in rules.rules if r.realtime}
    assert hot.created > 0 and set(hot.by_rule) == realtime and hot.cleared == hot.escalated == 0
    hot_tasks = _q(wh, "select task_id, created_at, due_at from ops.improvement_tasks order by 1")
    # ... and the nightly run finds them under the same natural key, never twice
    first = actions.derive_tasks(wh, rules, router, END, "run-1")
    assert _q(wh, "select task_id, created_at, due_at from ops.improvement_tasks "
                  "where rule = any(%s) order by 1", (list(realtime),)) == hot_tasks
    before, n_events = _tasks(wh), _q(wh, "select count(*) from ops.improvement_task_events")
    second = actions.derive_tasks(wh, rules, router, END, "run-2")
    assert first.created > 0 and second.created == 0 and second.updated == 0
    assert second.escalated == 0 and second.cleared == 0
    assert _tasks(wh) == before
    assert _q(wh, "select count(*) from ops.improvement_task_events") == n_events


def test_people_edits_survive_a_rerun_and_are_logged_once(wh, rules, router):
    actions.derive_tasks(wh, rules, router, END, "run-1")
    tid = _q(wh, "select task_id from ops.improvement_tasks where rule = 'fix_first_touchpoint' "
                 "and subject_id = 'billing'")[0][0]
    _q(wh, "update ops.improvement_tasks set status = 'in_progress', assignee = 'ana.people', "
           "notes = 'called the billing lead' where task_id = %s", (tid,))
    for run in ("run-2", "run-3"):
        actions.derive_tasks(wh, rules, router, END, run)
        actions.derive_tasks(wh, rules, router, END + timedelta(days=1), run + "b")
    assert _q(wh, "select status, assignee, notes from ops.improvement_tasks where task_id = %s",
              (tid,)) == [("in_progress", "ana.people", "called the billing lead")]
    events = _q(wh, "select event, detail->>'to' from ops.improvement_task_events "
                    "where task_id = %s and event in ('status_changed', 'assignee_changed') "
                    "order by event", (tid,))
    assert events == [("assignee_changed", "ana.people"), ("status_changed", "in_progress")]
    # a closed task is not raised again in the period it was closed
    _q(wh, "update ops.improvement_tasks set status = 'done' where task_id = %s", (tid,))
    n = _q(wh, "select count(*) from ops.improvement_tasks")
    actions.derive_tasks(wh, rules, router, END, "run-4")
    assert _q(wh, "select count(*) from ops.improvement_tasks") == n
    assert _q(wh, "select status from ops.improvement_tasks where task_id = %s", (tid,)) == [("done",)]


def test_every_owner_is_in_the_routing_table_and_fallback_is_flagged(wh, rules, router):
    _backfill(wh, rules, router, days=5)
    people = router.people()
    owners = _q(wh, "select distinct owner_person, escalation_owner from ops.improvement_tasks")
    assert owners and all(o in people and e in people for o, e in owners), owners
    assert _q(wh, "select count(*) from ops.improvement_tasks where owner_person is null "
                  "or owner_person = ''") == [(0,)]
    _candidates_view(wh, "unknown_touchpoint", subject_id="'teleporter'",
                     routing_key="'teleporter'", routed_to_fallback="true")
    odd = actions.RuleSet(rules=[actions.Rule(
        name="unknown_touchpoint", subject="touchpoint", title="look at {subject_id}")])
    s = actions.derive_tasks(wh, odd, router, END, "odd")
    assert s.fallback_routed == 1
    assert _q(wh, "select owner_team, owner_person, routed_to_fallback from ops.improvement_tasks "
                  "where rule = 'unknown_touchpoint'") == [("cx_office", "cx.duty.manager", True)]


def test_planted_fix_first_touchpoint_gets_a_task_for_its_owner(wh, rules, router, demo_warehouse):
    _, landing = demo_warehouse
    truth = json.loads((landing / "_truth" / "truth.json").read_text())
    planted = json.dumps(truth)
    assert "billing" in planted
    actions.derive_tasks(wh, rules, router, END, "run-1")
    rows = _q(wh, "select t.owner_team, t.owner_person, t.status, t.priority, c.owner_team "
                  "from ops.improvement_tasks as t "
                  "join staging.touchpoint_catalogue as c on c.touchpoint_code = t.subject_id "
                  "where t.rule = 'fix_first_touchpoint' and t.subject_id = 'billing'")
    assert len(rows) == 1
    team, person, status, prio, catalogue_team = rows[0]
    assert team == catalogue_team == "billing_ops" and person == "li.na"
    assert status == "open" and prio == 1


def test_no_contact_task_reaches_a_customer_without_consent_or_over_the_cap(wh, rules, router):
    _backfill(wh, rules, router)
    without_consent = _q(
        wh, "select t.task_id from ops.improvement_tasks as t "
            "join marts.dim_customers as c on c.customer_id = t.subject_id and c.is_current "
            "where t.is_contact and t.status <> 'suppressed' and not c.marketing_consent")
    assert without_consent == []
    over_cap = _q(
        wh, "select a.task_id from ops.improvement_tasks as a "
            "where a.is_contact and a.status <> 'suppressed' and (select count(*) "
            "  from ops.improvement_tasks as b where b.is_contact and b.status <> 'suppressed' "
            "  and b.subject_id = a.subject_id and b.created_at > a.created_at - %s "
            "  and b.created_at <= a.created_at) > %s",
        (timedelta(days=rules.contact_window_days), rules.contact_cap))
    assert over_cap == []
    reasons = _q(wh, "select distinct suppressed_reason from ops.improvement_tasks "
                     "where status = 'suppressed'")
    assert reasons and all(r for (r,) in reasons)


def test_contact_cap_suppresses_the_extra_contact_with_its_reason(wh, router):
    consenting = _q(wh, "select customer_id from marts.dim_customers where is_current "
                        "and marketing_consent order by customer_id limit 1")[0][0]
    for i in range(3):
        _candidates_view(wh, f"call_{i}", subject_id=f"'{consenting}'", marketing_consent="true")
    capped = actions.RuleSet(contact_cap=1, contact_window_days=30, rules=[
        actions.Rule(name=f"call_{i}", subject="customer", contact=True, title="call {subject_id}")
        for i in range(3)])
    s = actions.derive_tasks(wh, capped, router, END, "cap")
    assert (s.created, s.suppressed) == (3, 2)
    rows = _q(wh, "select rule, status, suppressed_reason from ops.improvement_tasks order by rule")
    assert rows[0][:2] == ("call_0", "open")
    assert all(st == "suppressed" and reason.startswith("contact cap") for _, st, reason in rows[1:])
    # people close them, the next run notices; two months on, the window has passed and a
    # new period's task may contact again (once: the cap still holds for the others)
    _q(wh, "update ops.improvement_tasks set status = 'done'")
    actions.derive_tasks(wh, capped, router, END, "cap-noticed")
    actions.derive_tasks(wh, capped, router, END + timedelta(days=62), "cap-later")
    assert _q(wh, "select count(*) from ops.improvement_tasks where status = 'open'") == [(1,)]


def test_withdrawn_consent_suppresses_an_open_contact_task(wh, rules, router):
    _backfill(wh, rules, router, days=3, start=END - timedelta(days=2))
    tid, cid = _q(wh, "select task_id, subject_id from ops.improvement_tasks "
                      "where is_contact and status = 'open' order by task_id limit 1")[0]
    _q(wh, "update marts.dim_customers set marketing_consent = false where customer_id = %s", (cid,))
    actions.derive_tasks(wh, rules, router, END, "after-withdrawal")
    assert _q(wh, "select status, suppressed_reason from ops.improvement_tasks where task_id = %s",
              (tid,)) == [("suppressed", "consent withdrawn after the task was created")]


def test_thirty_day_backfill_creates_no_duplicates_and_a_rerun_changes_nothing(wh, rules, router):
    stats = _backfill(wh, rules, router)
    assert sum(s.created for s in stats) > 0
    dupes = _q(wh, "select rule, subject_id, count(*) from ops.improvement_tasks "
                   "where status in ('open', 'in_progress') group by 1, 2 having count(*) > 1")
    assert dupes == []
    # a touchpoint condition that holds all month long is one task, not one per day or month
    assert _q(wh, "select count(*) from ops.improvement_tasks where rule = 'fix_first_touchpoint' "
                  "and subject_id = 'billing'") == [(1,)]
    before = _tasks(wh)
    n_events = _q(wh, "select count(*) from ops.improvement_task_events")
    again = _backfill(wh, rules, router, prefix="again")
    assert sum(s.created + s.escalated for s in again) == 0
    assert _tasks(wh) == before
    assert _q(wh, "select count(*) from ops.improvement_task_events") == n_events


def test_escalation_fires_once_per_breach_and_rerunning_changes_nothing(wh, rules, router):
    day0 = BACKFILL_FROM
    actions.derive_tasks(wh, rules, router, day0, "d0")
    tid, due, base, esc_owner = _q(
        wh, "select task_id, due_at, priority, escalation_owner from ops.improvement_tasks "
            "where rule = 'fix_first_touchpoint' order by subject_id limit 1")[0]
    overdue_day = (due + timedelta(days=1)).date()
    for d in range(1, (overdue_day - day0).days + 1):
        actions.derive_tasks(wh, rules, router, day0 + timedelta(days=d), f"d{d}")
    level, to, prio, breach = _q(wh, "select escalation_level, escalated_to, priority, "
                                     "escalated_due_at from ops.improvement_tasks "
                                     "where task_id = %s", (tid,))[0]
    assert (level, to, breach) == (1, esc_owner, due) and prio == max(1, base - 1)
    snapshot = _tasks(wh)
    for run in ("again-1", "again-2"):
        assert actions.derive_tasks(wh, rules, router, overdue_day, run).escalated == 0
    assert _tasks(wh) == snapshot
    actions.derive_tasks(wh, rules, router, overdue_day + timedelta(days=3), "later")
    assert _q(wh, "select count(*) from ops.improvement_task_events where task_id = %s "
                  "and event = 'escalated'", (tid,)) == [(1,)]
    # a new breach (people moved the due date, and it passed again) escalates once more
    _q(wh, "update ops.improvement_tasks set due_at = due_at + interval '5 days' "
           "where task_id = %s", (tid,))
    for run in ("breach-2", "breach-2-again"):
        actions.derive_tasks(wh, rules, router, overdue_day + timedelta(days=6), run)
    assert _q(wh, "select escalation_level from ops.improvement_tasks where task_id = %s",
              (tid,)) == [(2,)]


def test_cleared_condition_is_marked_not_deleted(wh, router):
    until = END - timedelta(days=5)
    _candidates_view(wh, "until_mid_month", "from intermediate.int_task_dates as d "
                     "where d.as_of_date <= %s", (until,), as_of_date="d.as_of_date",
                     subject_id="'billing'", routing_key="'billing'")
    rule = actions.Rule(name="until_mid_month", subject="touchpoint", title="fix {subject_id}",
                        backfill="each_date")
    rs = actions.RuleSet(rules=[rule])
    for d in range(8):
        actions.derive_tasks(wh, rs, router, until - timedelta(days=2) + timedelta(days=d), f"c{d}")
    assert _q(wh, "select condition_active, status from ops.improvement_tasks") == [(False, "open")]
    assert _q(wh, "select event from ops.improvement_task_events where event like 'condition%'") \
        == [("condition_cleared",)]


def test_marts_show_open_tasks_without_pii_and_effects_of_resolved_fixes(wh, rules, router,
                                                                         tmp_path):
    # the fix-first billing task is resolved a few days in; the backfill goes on
    _backfill(wh, rules, router, days=4)
    _q(wh, "update ops.improvement_tasks set status = 'done', assignee = 'li.na' "
           "where rule in ('fix_first_touchpoint', 'below_expectation_streak')")
    _backfill(wh, rules, router, start=BACKFILL_FROM + timedelta(days=4), days=26, prefix="rest")
    cols = {c for (c,) in _q(wh, "select column_name from information_schema.columns "
                                 "where table_schema = 'marts' and table_name = 'mart_open_tasks'")}
    assert {"owner_person", "age_days", "sla_status"} <= cols
    assert not {c for c in cols if any(p in c for p in ("email", "phone", "name"))
                and c != "rule_name"}
    n_open = _q(wh, "select count(*) from ops.improvement_tasks where status in ('open', "
                    "'in_progress')")
    assert _q(wh, "select count(*) from marts.mart_open_tasks") == n_open
    assert _q(wh, "select count(*) from marts.mart_open_tasks where sla_status not in "
                  "('overdue', 'due_soon', 'on_track')") == [(0,)]
    # mart_task_effects is a table, built after a run's task stage: rebuilt here after the
    # test resolved tasks by hand
    from flows import transform
    from flows.config import load_settings

    built = transform.run_dbt(wh, load_settings(home=str(tmp_path)),
                              ["run", "--select", "mart_task_effects"], END)
    assert built.success, built.failures
    effect = _q(wh, "select n_resolved, n_measured, n_observations, n_control, effect, effect_low, "
                    "effect_high, treated_before, treated_after from marts.mart_task_effects "
                    "where rule_name = 'fix_first_touchpoint' and owner_team = 'billing_ops'")
    assert len(effect) == 1
    n_resolved, n_measured, n_obs, n_control, eff, low, high, before, after = effect[0]
    assert n_resolved == 1 and n_measured == 1 and n_obs > 0 and n_control > 0
    assert low <= eff <= high and after is not None and before is not None
    # every rule and owner with tasks has a row, measured or not
    assert _q(wh, "select count(distinct (rule, owner_team)) from ops.improvement_tasks") == \
        _q(wh, "select count(distinct (rule_name, owner_team)) from marts.mart_task_effects")


def test_cli_lists_and_exports_tasks(wh, rules, router, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    actions.derive_tasks(wh, rules, router, END, "cli")
    monkeypatch.setenv("CXLOOP_WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("CXLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    res = runner.invoke(app, ["tasks", "list", "--owner", "billing_ops"])
    assert res.exit_code == 0, res.output
    assert "billing" in res.output and "li.na" in res.output
    out = tmp_path / "tasks.json"
    res = runner.invoke(app, ["tasks", "export", "--format", "json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    exported = json.loads(out.read_text())
    assert len(exported) == _q(wh, "select count(*) from ops.improvement_tasks")[0][0]
    assert all(t["owner_person"] for t in exported)
    res = runner.invoke(app, ["tasks", "export", "--format", "csv", "--rule", "fix_first_touchpoint"])
    assert res.exit_code == 0 and res.output.splitlines()[0].startswith("task_id,rule,")
    res = runner.invoke(app, ["tasks", "export", "--format", "xml"])
    assert res.exit_code != 0


def test_backfill_derives_the_call_backs_of_every_night_with_their_due_dates(demo_warehouse):
    """The pipeline's backfill (the module fixture) derived tasks date by date: each night's
    detractors got their call-back that night, due 48 hours later, not all on the last date."""
    base, _ = demo_warehouse
    rows = _q(base, "select created_at, due_at, period, created_run_id from ops.improvement_tasks "
                    "where rule = 'detractor_follow_up'")
    nights = {c.date() for c, *_ in rows}
    assert len(nights) > 60, sorted(nights)  # 90 nights, a few without a detractor
    for created, due, period, _ in rows:
        assert due - created == timedelta(hours=48)
        # as-of is midnight after the run date D; the answer was given on D or D - 1
        assert created.date() - timedelta(days=2) <= date.fromisoformat(period) \
            <= created.date() - timedelta(days=1)
    # every night's candidates have their task (opened, suppressed, or the open one of the
    # customer that the call-back confirms)
    missing = _q(base, """
        select c.as_of_date, c.subject_id from intermediate.int_task_candidates__detractor_follow_up c
        where not exists (
          select 1 from ops.improvement_tasks t
          where t.rule = 'detractor_follow_up' and t.subject_id = c.subject_id
            and t.created_at <= c.as_of_date + interval '1 day'
            and (t.natural_key = 'detractor_follow_up|' || c.subject_id || '|' || c.period
                 or t.status <> 'done'))""")
    assert missing == []
    # the SQL routing (macro route_to_owner) agrees with the routing file's rule
    router = actions.Router(ROUTING)
    routed = _q(base, "select evidence->>'region', evidence->>'segment', owner_team, owner_person, "
                      "routed_to_fallback from ops.improvement_tasks "
                      "where rule = 'detractor_follow_up'")
    for region, segment, team, person, fallback in routed:
        want = router.route("customer", region, segment)
        assert (team, person, fallback) == (want.owner_team, want.owner_person, want.fallback)
    # the default capacity holds no call-back back
    assert _q(base, "select count(*) from ops.task_backlog where rule = 'detractor_follow_up'") \
        == [(0,)]
    # the other rules do not look back: evaluated on the last date only
    assert _q(base, "select distinct created_at::date from ops.improvement_tasks "
                    "where rule = 'high_value_retention'") == [(END + timedelta(days=1),)]
    # one dbt build of the candidates for the whole range
    assert _q(base, "select min(as_of_date), max(as_of_date) from intermediate.int_task_dates") \
        == [(START, END)]


def _set_capacity(wh: Warehouse, rows: list[tuple[str, str, str, int]]) -> None:
    with wh.transaction() as cur:
        cur.execute("delete from staging.owner_capacity")
        for row in rows:
            cur.execute("insert into staging.owner_capacity values (%s, %s, %s, %s)", row)


def test_capacity_holds_customer_tasks_back_in_ranked_backlog_and_next_opens_next(
        wh, rules, router):
    _set_capacity(wh, [("*", "retention", "day", 2)])
    stats = actions.derive_tasks(wh, rules, router, END, "cap-1")
    per_team = dict(_q(wh, "select owner_team, count(*) from ops.improvement_tasks "
                           "where rule in ('high_value_retention', 'silent_responder_check_in') "
                           "and status = 'open' group by 1"))
    assert per_team and all(n <= 2 for n in per_team.values()), per_team
    backlog = _q(wh, "select owner_team, rule, subject_id, backlog_rank, priority_score "
                     "from ops.task_backlog order by owner_team, rule, backlog_rank")
    assert backlog and stats.backlog == len(backlog)
    # the queue is in priority order, and what was opened outranks what waits
    for team, rule in {(t, r) for t, r, *_ in backlog}:
        scores = [p for t, r, _, _, p in backlog if (t, r) == (team, rule)]
        assert scores == sorted(scores, reverse=True)
        assert [k for t, r, _, k, _ in backlog if (t, r) == (team, rule)] == \
            list(range(1, len(scores) + 1))
    team = next(t for t, load in stats.teams.items() if load.backlog)
    assert stats.teams[team].at_capacity and f"{team}: " in "\n".join(stats.team_lines())
    assert "at capacity" in next(x for x in stats.team_lines() if x.startswith(f"{team}:"))
    # touchpoint tasks and detractor call-backs are never crowded out
    assert _q(wh, "select count(*) from ops.improvement_tasks where subject_type = 'touchpoint'") \
        == [(sum(stats.by_rule[r] for r in ("fix_first_touchpoint", "below_expectation_streak")),)]
    assert _q(wh, "select count(*) from ops.improvement_tasks where rule = 'detractor_follow_up'") \
        == [(stats.by_rule["detractor_follow_up"],)]
    # BI sees the backlog with the team's capacity
    assert _q(wh, "select count(*), min(capacity), max(capacity_period) from marts.mart_task_backlog") \
        == [(len(backlog), 2, "day")]
    # a re-run of the day opens nothing more
    assert actions.derive_tasks(wh, rules, router, END, "cap-2").created == 0
    # people finish the team's tasks; the next day the first two of its queue are opened
    rule, first = next((r, s) for t, r, s, k, _ in backlog if t == team and k == 1)
    second = [s for t, r, s, k, _ in backlog if (t, r, k) == (team, rule, 2)]
    _q(wh, "update ops.improvement_tasks set status = 'done' where owner_team = %s", (team,))
    actions.derive_tasks(wh, rules, router, END + timedelta(days=1), "cap-3")
    opened = {s for (s,) in _q(wh, "select subject_id from ops.improvement_tasks where status = "
                                   "'open' and owner_team = %s and rule = %s", (team, rule))}
    assert first in opened and set(second) <= opened


def _state(wh: Warehouse) -> dict[str, list[tuple]]:
    """Tasks, events and backlog without the run ids (which differ between the two ways)."""
    return {
        "tasks": _q(wh, "select task_id, natural_key, status, priority, owner_person, "
                        "evidence::text, title, due_at, escalation_level, condition_active, "
                        "created_at, updated_at, last_confirmed_on, condition_checked_on, "
                        "suppressed_reason, closed_at from ops.improvement_tasks order by task_id"),
        "events": _q(wh, "select task_id, event, detail::text, as_of from "
                         "ops.improvement_task_events order by task_id, as_of, event, detail::text"),
        "backlog": _q(wh, "select as_of_date, rule, subject_id, backlog_rank from "
                          "ops.task_backlog order by 1, 2, 3")}


def test_a_range_derives_what_each_night_would_have(wh, rules, monkeypatch):
    """derive_range (look-back candidates staged once for the range) gives the same tasks,
    events and backlog as deriving every night in its own run, with a capacity that holds
    call-backs back on some nights. The range renders its titles a few candidates at a
    time (as a year of a million customers does), each night all at once."""
    from flows.actions import derive

    call_back = next(r for r in rules.rules if r.backfill == "each_date")
    _set_capacity(wh, [("*", call_back.capacity_class, "day", 1)])
    first = END - timedelta(days=20)
    monkeypatch.setattr(derive, "TITLE_CHUNK", 7)
    stats = actions.derive_range(wh, rules, first, END, "range")
    monkeypatch.undo()
    ranged = _state(wh)
    assert stats.by_rule[call_back.name] > 0 and ranged["backlog"]
    assert len(ranged["tasks"]) > 3 * 7  # several chunks of titles
    assert all(t[6] and t[6].startswith(call_back.title.split("{")[0])
               for t in ranged["tasks"] if t[1].startswith(call_back.name + "|"))
    with wh.transaction() as cur:
        cur.execute("delete from ops.improvement_task_events; delete from ops.task_backlog; "
                    "delete from ops.improvement_tasks")
    day = first
    while day <= END:
        actions.derive_tasks(wh, rules, None, day, f"night-{day}", looking_back=day < END)
        day += timedelta(days=1)
    nightly = _state(wh)
    for part in ("tasks", "events", "backlog"):
        assert ranged[part] == nightly[part], part
