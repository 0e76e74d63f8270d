"""Rule-file and capacity-file checks, priority, periods and titles, without a warehouse.

Routing is SQL now (macro route_to_owner); its cases are dbt unit tests in
dbt_project/models/intermediate/actions/_actions__unit_tests.yml.
"""

from __future__ import annotations

from datetime import date

import pytest

from flows.actions import Router, load_capacity, load_rules, period_of, priority, task_id
from flows.config import REPO_ROOT
from flows.errors import ConfigError

ROUTING = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"


def test_python_routing_check_matches_the_sql_rule():
    # the SQL macro route_to_owner is tested by dbt unit tests; this is the same rule
    r = Router(ROUTING)
    assert r.route("billing", "north", "enterprise").owner_person == "sofia.rossi"
    assert r.route("installation", "south", "smb").owner_person == "ana.silva"
    assert r.route("installation", "east", "smb").owner_person == "jun.wang"
    fb = r.route("no_such_touchpoint", "north", "smb")
    assert fb.fallback and fb.owner_team == "cx_office"


def test_routing_file_needs_a_fallback_row(tmp_path):
    p = tmp_path / "owner_routing.csv"
    p.write_text(ROUTING.read_text().splitlines()[0] + "\nbilling,*,*,billing_ops,li.na,boss,false\n")
    with pytest.raises(ConfigError, match="no fallback owner row"):
        Router(p)


def test_priority_and_periods_and_ids_are_deterministic():
    assert priority(3, 5000, 1000) == 1
    assert priority(3, 10, 1000) == 1
    assert priority(1, None, 1000) == 3
    assert priority(2, 1000, 1000) == 1
    assert period_of(date(2026, 8, 3), "month") == "2026-08"
    assert period_of(date(2026, 8, 3), "week") == "2026-W32"
    assert period_of(date(2026, 8, 3), "day") == "2026-08-03"
    assert task_id("r|s|p") == task_id("r|s|p") != task_id("r|s|q")


def test_shipped_rules_load_and_cover_the_required_rules():
    rules = load_rules(REPO_ROOT / "tasks.yml")
    names = {r.name for r in rules.rules}
    assert {"fix_first_touchpoint", "below_expectation_streak", "detractor_follow_up",
            "high_value_retention", "silent_responder_check_in"} <= names
    assert all(r.contact for r in rules.rules if r.subject == "customer")
    # every rule has its model, and the rule file holds no SQL
    models = REPO_ROOT / "dbt_project/models/intermediate/actions"
    assert all((models / f"{r.model_name}.sql").exists() for r in rules.rules)
    assert "select" not in (REPO_ROOT / "tasks.yml").read_text().lower()
    # thresholds reach the models as the dbt var task_params
    assert rules.dbt_vars()["task_params"]["high_value_retention"]["min_churn_prob_90"] == 0.25
    # the call-backs look back in a backfill; the rules over run-date marts do not
    looks_back = {r.name for r in rules.rules if r.backfill == "each_date"}
    assert looks_back == {"detractor_follow_up"}


def test_a_rule_with_sql_says_where_the_sql_goes(tmp_path):
    p = tmp_path / "tasks.yml"
    p.write_text("rules:\n  - name: my_rule\n    subject: customer\n    trigger: select 1\n"
                 "    title: t\n")
    with pytest.raises(ConfigError, match="int_task_candidates__my_rule.sql"):
        load_rules(p)


def test_shipped_capacity_keeps_every_call_back_and_bad_rows_name_the_line(tmp_path):
    rules = load_rules(REPO_ROOT / "tasks.yml")
    router = Router(ROUTING)
    caps, warnings = load_capacity(REPO_ROOT / "dbt_project/seeds/owner_capacity.csv", rules, router)
    assert warnings == []
    callback = next(r for r in rules.rules if r.name == "detractor_follow_up")
    assert caps and all(c.rule_class != callback.capacity_class for c in caps)
    touchpoint_classes = {r.capacity_class for r in rules.rules if r.subject != "customer"}
    assert not {c.rule_class for c in caps} & touchpoint_classes
    p = tmp_path / "owner_capacity.csv"
    p.write_text("owner_team,rule_class,period,capacity\n"
                 "retention_desk,retention,week,5\n"
                 "retention_dsk,retention,month,-1\n"
                 "retention_desk,touchpoint,day,1\n")
    with pytest.raises(ConfigError) as e:
        load_capacity(p, rules, router)
    msg = str(e.value)
    assert f"{p}: line 3: period 'month'" in msg and "line 3: capacity '-1'" in msg
    # a row that names no routing team or no customer rule's class applies to nothing: said
    p.write_text("owner_team,rule_class,period,capacity\n"
                 "retention_dsk,retention,week,5\n"
                 "retention_desk,touchpoint,day,1\n")
    caps, warnings = load_capacity(p, rules, router)
    assert f"{p}: line 2: owner_team 'retention_dsk' is not a team" in warnings[0]
    assert "line 3: rule_class 'touchpoint' is not the class of a customer rule" in warnings[1]


def test_bad_rule_file_names_the_key(tmp_path):
    p = tmp_path / "tasks.yml"
    p.write_text("rules:\n  - name: x\n    subject: planet\n    title: t\n")
    with pytest.raises(ConfigError, match="rules.0.subject"):
        load_rules(p)


def test_duplicate_rule_names_are_refused(tmp_path):
    rule = "  - name: x\n    subject: touchpoint\n    title: t\n"
    p = tmp_path / "tasks.yml"
    p.write_text("rules:\n" + rule + rule)
    with pytest.raises(ConfigError, match="unique; repeated: x"):
        load_rules(p)


def test_title_survives_nulls_and_export_is_ticketing_ready():
    import csv
    import io
    import json
    from datetime import UTC, datetime
    from decimal import Decimal

    from flows.actions import EXPORT_COLUMNS, Rule, as_of_for, export_rows, title

    rule = Rule(name="r", subject="touchpoint", title="CSAT {csat:.2f} at {tp}")
    assert title(rule, {"subject_id": "x", "csat": 3.14159, "tp": "billing"}) == "CSAT 3.14 at billing"
    assert title(rule, {"subject_id": "x", "csat": None, "tp": "billing"}) == "CSAT nan at billing"
    assert title(rule, {"subject_id": "x"}) == "r: x"
    assert as_of_for(date(2026, 8, 3)) == datetime(2026, 8, 4, tzinfo=UTC)
    row = {c: None for c in EXPORT_COLUMNS}
    row.update(task_id="T1", title='call "C1", today', value_at_risk=Decimal("12.50"),
               due_at=datetime(2026, 8, 4, tzinfo=UTC), evidence={"nps": 3})
    parsed = list(csv.DictReader(io.StringIO(export_rows([row], "csv"))))
    assert parsed[0]["title"] == 'call "C1", today' and json.loads(parsed[0]["evidence"]) == {"nps": 3}
    assert parsed[0]["due_at"] == "2026-08-04T00:00:00+00:00"
    assert json.loads(export_rows([row], "json"))[0]["value_at_risk"] == 12.5


def test_router_people_cover_owners_and_escalation_owners():
    people = Router(ROUTING).people()
    assert {"li.na", "cx.duty.manager", "head.of.finance"} <= people
