"""Routing, priority, periods and rule-file errors, without a warehouse."""

from __future__ import annotations

from datetime import date

import pytest

from flows.actions import Router, load_rules, period_of, priority, task_id
from flows.config import REPO_ROOT
from flows.errors import ConfigError

ROUTING = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"


def test_most_specific_route_wins_and_unknown_goes_to_fallback():
    r = Router(ROUTING)
    assert r.route("billing", "north", "enterprise").owner_person == "sofia.rossi"
    assert r.route("billing", "north", "consumer").owner_person == "li.na"
    assert r.route("installation", "south", "smb").owner_person == "ana.silva"
    assert r.route("installation", "east", "smb").owner_person == "jun.wang"
    fb = r.route("no_such_touchpoint", "north", "smb")
    assert fb.fallback and fb.owner_team == "cx_office"
    assert not r.route("customer", "west", "smb").fallback


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


def test_bad_rule_file_names_the_key(tmp_path):
    p = tmp_path / "tasks.yml"
    p.write_text("rules:\n  - name: x\n    subject: planet\n    trigger: select 1\n    title: t\n")
    with pytest.raises(ConfigError, match="rules.0.subject"):
        load_rules(p)


def test_duplicate_rule_names_are_refused(tmp_path):
    rule = "  - name: x\n    subject: touchpoint\n    trigger: select 1\n    title: t\n"
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

    from flows.actions import EXPORT_COLUMNS, Rule, _title, as_of_for, export_rows

    rule = Rule(name="r", subject="touchpoint", trigger="select 1", title="CSAT {csat:.2f} at {tp}")
    assert _title(rule, {"subject_id": "x", "csat": 3.14159, "tp": "billing"}) == "CSAT 3.14 at billing"
    assert _title(rule, {"subject_id": "x", "csat": None, "tp": "billing"}) == "CSAT nan at billing"
    assert _title(rule, {"subject_id": "x"}) == "r: x"
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
