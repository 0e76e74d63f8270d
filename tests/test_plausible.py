"""Implausible values are quarantined before raw, so no delivered row can make dbt fail.

A negative monthly value or wait, a start date in 2999, a contract ending before it
started: each row goes to quarantine with a reason naming the column and value, the run
exits 0, and so does the next night's. A test over dbt's yml keeps the two lines of
defence in step: every range test dbt runs on a delivered column has a validation rule.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from flows.config import DEFAULT_PLAUSIBLE, Domain, load_settings
from flows.entities import ENTITIES
from flows.errors import ConfigError
from flows.rules import configure_suite, domain_parameter
from flows.transform import DBT_DIR
from flows.validate import entity_rules

D1, D2 = date(2026, 8, 3), date(2026, 8, 4)
RANGE_TESTS = ("non_negative", "in_range")

# Range tests on columns computed from delivered ones, and what keeps each in range: the
# validation rules it relies on (entity.rule, checked to exist) or why it holds whatever
# the input. A new range test fails test_every_dbt_range_test_is_backed_by_validation
# until it is listed here or backed by a rule.
DERIVED: dict[str, tuple[str, ...] | str] = {
    "stg_crm__subscriptions.total_monthly_value": (
        "subscriptions.monthly_value_plausible", "subscriptions.quantity_at_least_1"),
    "int_subscriptions_rolled_up.monthly_value": (
        "subscriptions.monthly_value_plausible", "subscriptions.quantity_at_least_1"),
    "int_subscriptions_rolled_up.days_to_renewal": "the earliest renewal on or after the cutoff",
    "int_churn_observations.tenure_days": "greatest(observation_date - signup_date, 0)",
    "int_churn_observations.answer_rate": "answered invitations over invitations",
    "int_churn_observations.habit_answer_rate": "a shrunk share of answered invitations",
    "int_touchpoint_unhappy_customers.value_at_risk": (
        "subscriptions.monthly_value_plausible", "subscriptions.quantity_at_least_1"),
    **{f"int_task_candidates__{rule}.priority_score": "value at risk (x a flag's lift), >= 0"
       for rule in ("below_expectation_streak", "detractor_follow_up", "fix_first_touchpoint",
                    "high_value_retention", "silent_responder_check_in")},
    "int_churn_features.tenure_days": "greatest(cutoff_date - signup_date, 0)",
    "int_churn_feature_states.n_answered_invitations": "a count of invitations, coalesced to 0",
    "int_churn_feature_states.n_recent_unanswered": "a count of the latest two invitations, 0-2",
    "mart_churn_scores_latest.churn_prob_30": "model output (python_outputs.churn_scores)",
    "mart_churn_scores_latest.churn_prob_90": "model output (python_outputs.churn_scores)",
    "mart_churn_scores_latest.churn_prob_180": "model output (python_outputs.churn_scores)",
    "mart_churn_scores_latest.value_at_risk": (
        "subscriptions.monthly_value_plausible", "subscriptions.quantity_at_least_1"),
    "mart_customer_360.tenure_days": "int_churn_features.tenure_days",
    "mart_customer_360.churn_prob_30": "model output (python_outputs.churn_scores)",
    "mart_customer_360.churn_prob_90": "model output (python_outputs.churn_scores)",
    "mart_customer_360.churn_prob_180": "model output (python_outputs.churn_scores)",
    "mart_customer_360.value_at_risk": (
        "subscriptions.monthly_value_plausible", "subscriptions.quantity_at_least_1"),
    "mart_apostle_summary.share_of_customers": "a share of counted customers",
    "mart_apostle_summary.share_of_value": ("subscriptions.monthly_value_plausible",),
    "fct_touchpoint_daily.n_interactions": "a count",
    "fct_touchpoint_daily.item_rating_n": "a count",
    "fct_touchpoint_daily.response_rate": "answered invitations over invitations",
    "fct_touchpoint_daily.csat": ("responses.csat_in_range",),
    "fct_touchpoint_daily.ces": ("responses.ces_in_range",),
    "fct_touchpoint_daily.nps": ("responses.nps_in_range",),
    "mart_touchpoint_scorecard.response_rate": "answered invitations over invitations",
    "mart_touchpoint_scorecard.nps": ("responses.nps_in_range",),
    "mart_satisfaction_trend.nps": ("responses.nps_in_range",),
    "mart_satisfaction_trend.csat": ("responses.csat_in_range",),
    "mart_driver_importance.importance": "relative weight shares (drivers stage)",
    "mart_priority_quadrant.placement_flip_share": "a share of bootstrap resamples",
    "mart_goal_trend.top_box_share": "a share of answers",
    "mart_customer_journeys.hours_since_previous_step": "steps ordered by time",
    "python_outputs.churn_scores.churn_prob_30": "model output",
    "python_outputs.churn_scores.churn_prob_90": "model output",
    "python_outputs.churn_scores.churn_prob_180": "model output",
    "python_outputs.py_driver_importance.importance": "relative weight shares",
    "python_outputs.py_driver_importance.placement_flip_share": "a share of resamples",
}


def _dbt_range_tests() -> list[tuple[str, str, str, dict]]:
    """(node, column, test, arguments) of every range test in the dbt project's yml."""
    out = []
    for f in sorted((DBT_DIR / "models").rglob("*.yml")):
        doc = yaml.safe_load(f.read_text()) or {}
        nodes = [(m["name"], m) for m in doc.get("models") or []]
        nodes += [(f"{s['name']}.{t['name']}", t) for s in doc.get("sources") or []
                  for t in s.get("tables") or []]
        for name, node in nodes:
            for col in node.get("columns") or []:
                for t in col.get("data_tests") or col.get("tests") or []:
                    test = t if isinstance(t, str) else next(iter(t))
                    if test in RANGE_TESTS:
                        args = {} if isinstance(t, str) else t[test].get("arguments", {})
                        out.append((name, col["name"], test, args))
    return out


def _bounds(rule) -> tuple[float | None, float | None]:
    """The bounds a range rule enforces with the default domain."""
    domain = Domain()
    key = rule.domain
    if rule.kind == "plausible":
        return domain.plausible[key]
    if rule.kind == "scale":
        return domain.scales[key]
    return rule.kwargs.get("min_value"), rule.kwargs.get("max_value")


def test_every_dbt_range_test_is_backed_by_validation():
    rules = {(e.name, r.name): r for e in ENTITIES.values() for r in entity_rules(e)}
    tests = _dbt_range_tests()
    assert len(tests) > 20, "the yml walk found too few range tests"
    seen = set()
    for node, column, test, args in tests:
        name = f"{node}.{column}"
        seen.add(name)
        entity = node.split("__", 1)[1] if node.startswith("stg_") else None
        if entity in ENTITIES and column in ENTITIES[entity].column_names:
            # A delivered column: some rule must hold it at least as tight as dbt's test.
            backing = [r for (ent, _), r in rules.items() if ent == entity
                       and r.expectation == "expect_column_values_to_be_between"
                       and r.kwargs.get("column") == column]
            assert backing, f"{name}: dbt {test} has no validation rule before raw"
            lo, hi = _bounds(backing[0])
            if test == "non_negative":
                assert lo is not None and lo >= 0, f"{name}: rule allows {lo}"
            else:
                var = re.search(r"domain_scales'\)\['([^']+)'\]", str(args.get("min_value")))
                if var:  # dbt reads the same configured scale as the rule
                    assert backing[0].kind == "scale" and backing[0].domain == var.group(1)
                else:
                    assert lo is not None and lo >= args["min_value"], name
                    assert hi is not None and hi <= args["max_value"], name
            continue
        assert name in DERIVED, (f"{name}: dbt {test} on a computed column; list it in "
                                 "DERIVED with the rules (or reason) that keep it in range")
        if isinstance(DERIVED[name], tuple):
            for ref in DERIVED[name]:
                assert tuple(ref.split(".", 1)) in rules, f"{name}: no rule {ref}"
    assert not set(DERIVED) - seen, f"stale DERIVED entries: {set(DERIVED) - seen}"


def test_defaults_cover_the_dbt_non_negative_columns_and_cannot_be_loosened(tmp_path):
    staged = {f"{n.split('__', 1)[1]}.{c}" for n, c, t, _ in _dbt_range_tests()
              if t == "non_negative" and n.startswith("stg_")
              and c in ENTITIES[n.split("__", 1)[1]].column_names}
    assert staged == set(DEFAULT_PLAUSIBLE)
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text("domain:\n  plausible:\n    subscriptions.monthly_value: [-10, null]\n")
    with pytest.raises(ConfigError, match=r"monthly_value.*below 0.*non_negative"):
        load_settings(cfg)
    cfg.write_text("domain:\n  ordered:\n    - [subscriptions.start_date, orders.order_date]\n")
    with pytest.raises(ConfigError, match="one entity"):
        load_settings(cfg)


def test_configured_ranges_and_pairs_reach_the_suite():
    """configure_suite adds a rule for a configured key and drops a left-out pair."""
    from flows.validate import suite_dict

    params = {domain_parameter("subscriptions.monthly_value", "plausible_min"): 0,
              domain_parameter("subscriptions.monthly_value", "plausible_max"): 5000,
              domain_parameter("subscriptions.quantity", "plausible_min"): None,
              domain_parameter("subscriptions.quantity", "plausible_max"): 500,
              "max_future_days": 7, "ordered_pairs": ["subscriptions.start_date.end_date"]}
    suite = configure_suite(suite_dict(ENTITIES["subscriptions"]), "subscriptions", params)
    by_rule = {x["meta"]["rule"]: x for x in suite["expectations"]}
    assert by_rule["monthly_value_plausible"]["description"] == \
        "monthly_value must be between 0 and 5000"
    assert by_rule["quantity_plausible"]["description"] == "quantity must be at most 500"
    assert by_rule["start_date_not_in_future"]["description"].startswith(
        "start_date is more than 7 day(s)")
    assert "end_date_not_before_start_date" in by_rule
    assert "renewal_date_not_before_start_date" not in by_rule


# --- one warehouse, two nightly runs -----------------------------------------------------
CUSTOMERS = ("customer_id,full_name,email,phone,region,segment,plan,acquisition_channel,"
             "marketing_consent,signup_date,updated_at\n"
             "c1,Ann,ann@example.com,,north,consumer,basic,web,true,2025-01-01,2026-08-01 09:00:00\n"
             "c2,Bo,bo@example.com,,south,smb,plus,app,false,2025-02-01,2026-08-01 09:00:00\n")
SUBSCRIPTIONS = {  # row number (1-based, data rows) -> what is wrong with it
    "s1,c1,basic,active,2025-01-01,,,20.00,2026-08-01 09:00:00": None,
    "s2,c2,plus,active,2025-02-01,,,-99.00,2026-08-01 09:00:00": "monthly_value = -99.00",
    "s3,c2,plus,active,2999-01-01,,,30.00,2026-08-01 09:00:00": "start_date = 2999-01-01",
    "s4,c1,basic,cancelled,2025-06-01,2025-05-01,price,10.00,2026-08-01 09:00:00":
        "start_date = 2025-06-01, end_date = 2025-05-01",
}
INTERACTIONS = {
    # 20:00 UTC on the 2nd is the 3rd in the configured zone (+08:00).
    "i1,c1,billing,phone,2026-08-02T20:00:00Z,30,300,true,true": None,
    "i2,c2,billing,phone,2026-08-02 11:00:00,-500,300,true,true": "wait_seconds = -500",
    "i3,c2,billing,web,2026-08-02 12:00:00,20,7200,false,false": "handle_seconds = 7200",
}
ORDERS = {"o1,c1,2026-08-02,15.00": None, "o2,c2,2026-08-02,-5.00": "amount = -5.00"}


def _write(landing: Path, source: str, entity: str, day: date, rows: list[str]) -> None:
    folder = landing / source / entity / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    header = ",".join(ENTITIES[entity].column_names[:len(rows[0].split(","))])
    (folder / f"{entity}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def _cli(root: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env["CXLOOP_WAREHOUSE_URL"] = url
    return subprocess.run([sys.executable, "-m", "flows", *args, "--config",
                           str(root / "cxloop.yml")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=root)


@pytest.fixture(scope="module")
def day_one(pg_server, tmp_path_factory):
    """One warehouse for the module: day 1 loaded as the nightly ingest stage loads it."""
    import uuid

    import psycopg2
    from psycopg2 import sql

    from flows import load
    from flows.extract import find_batches
    from flows.validate import GxRunner
    from flows.warehouse import Warehouse, migrate

    name = "plausible_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(pg_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin.close()
    wh = Warehouse(url=pg_server.url.replace("/cxloop_session?", f"/{name}?"),
                   pgdata=pg_server.pgdata, timezone="Asia/Shanghai")
    conn = wh.connect()
    migrate(conn)
    conn.close()
    root = tmp_path_factory.mktemp("plausible")
    landing = root / "landing"
    _write(landing, "crm", "customers", D1, CUSTOMERS.splitlines()[1:])
    _write(landing, "crm", "subscriptions", D1, list(SUBSCRIPTIONS))
    _write(landing, "crm", "interactions", D1, list(INTERACTIONS))
    _write(landing, "crm", "orders", D1, list(ORDERS))
    _write(landing, "crm", "interactions", D2,
           ["i4,c1,billing,phone,2026-08-04 08:00:00,40,200,true,true"])
    # A bound of the user's own (handle time at most an hour) and a key with no default.
    (root / "cxloop.yml").write_text(yaml.safe_dump({
        "landing": "landing", "home": "home", "timezone": "Asia/Shanghai",
        "domain": {"plausible": {"interactions.handle_seconds": [0, 3600],
                                 "orders.amount": [0, None]}}}))
    settings = load_settings(root / "cxloop.yml")
    load.refresh_reference(wh, settings)
    gx = GxRunner(Path(settings.home), wh.sqlalchemy_url())
    batches = list(find_batches(settings, [D1]))
    for entity in ("customers", "subscriptions", "interactions", "orders"):
        [r] = load.ingest_entity(wh, gx, entity, [b for b in batches if b.entity == entity],
                                 "day-1")
        assert r.status == "loaded", r.error
    return wh, settings, root


@pytest.mark.integration
def test_implausible_rows_are_quarantined_with_column_and_value(day_one):
    wh, _, _ = day_one
    with wh.transaction() as cur:
        for entity, rows in (("subscriptions", SUBSCRIPTIONS), ("interactions", INTERACTIONS),
                             ("orders", ORDERS)):
            cur.execute(f"select _row_number, reasons from quarantine.{entity}")  # noqa: S608
            got = dict(cur.fetchall())
            want = {i + 1: why for i, why in enumerate(rows.values()) if why}
            assert set(got) == set(want), (entity, got)
            for n, why in want.items():
                assert why in got[n], (entity, got[n])  # the reason names column and value
            cur.execute(f"select count(*) from raw.{entity}")  # noqa: S608
            assert cur.fetchone()[0] == len(rows) - len(want)
        cur.execute("select reasons from quarantine.subscriptions where _row_number = 2")
        assert cur.fetchone()[0] == "monthly_value must be at least 0 (monthly_value = -99.00)"
        cur.execute("select reasons from quarantine.interactions where _row_number = 3")
        assert cur.fetchone()[0].startswith("handle_seconds must be between 0 and 3600")


@pytest.mark.integration
def test_dbt_builds_and_passes_its_tests_over_what_day_one_left(day_one):
    """The models and tests that failed on the first negative value, forever after."""
    from flows.transform import AFTER_PYTHON, build

    wh, settings, _ = day_one
    outcome = build(wh, settings, D1, exclude=AFTER_PYTHON)  # raises if any test fails
    assert outcome.counts.get("pass", 0) > 50
    with wh.transaction() as cur:
        cur.execute("select count(*), min(monthly_value) from staging.stg_crm__subscriptions")
        assert cur.fetchone() == (1, 20)
        # Tables dbt builds count days of the configured zone (dbt's session runs in it).
        cur.execute("select date_day, sum(n_interactions) from marts.fct_touchpoint_daily "
                    "where n_interactions > 0 group by 1")
        assert cur.fetchall() == [(D1, 1)]  # i1, 20:00 UTC on the 2nd


@pytest.mark.integration
@pytest.mark.slow
def test_the_next_nightly_run_exits_0(day_one):
    """The whole nightly run of day 2 (every stage, every dbt test) over day 1's raw."""
    wh, _, root = day_one
    res = _cli(root, wh.url, "run", "--date", str(D2))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    with wh.transaction() as cur:
        cur.execute("select status from ops.pipeline_runs")
        assert cur.fetchall() == [("completed",)]
        cur.execute("select date_day, sum(n_interactions) from marts.fct_touchpoint_daily "
                    "where n_interactions > 0 group by 1 order by 1")
        assert cur.fetchall() == [(D1, 1), (D2, 1)]
