"""Configuration: bad keys are named, the environment wins, paths resolve beside the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import load_settings
from flows.errors import ConfigError


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None)
    assert s.timezone == "UTC" and set(s.sources) == {"crm", "survey"}
    assert s.reference.touchpoint_catalogue.exists()


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "cxloop.yml"
    p.write_text("sources:\n  crm:\n    encodng: utf-8\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert "sources.crm.encodng" in str(e.value) and "unknown key" in str(e.value)
    assert str(p) in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("timezone: Mars/Olympus\n", "timezone: Value error, unknown timezone"),
        ("sources:\n  crm:\n    encoding: utf-9\n", "unknown encoding 'utf-9'"),
        ("lock_timeout_seconds: -1\n", "lock_timeout_seconds"),
        ("- a list\n", "expected a mapping"),
        ("timezone: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_values_are_reported_with_their_key(tmp_path, text, needle):
    p = tmp_path / "cxloop.yml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        load_settings(p)
    assert needle in str(e.value)


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.yml")


def test_environment_overrides_file_and_relative_paths_resolve(tmp_path, monkeypatch):
    p = tmp_path / "conf" / "cxloop.yml"
    p.parent.mkdir()
    p.write_text("landing: extracts\ntimezone: Europe/Berlin\n")
    s = load_settings(p)
    assert s.landing == tmp_path / "conf" / "extracts"
    monkeypatch.setenv("CXLOOP_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("CXLOOP_WAREHOUSE_URL", "postgresql://u:secret@db.example/x")
    s = load_settings(p)
    assert s.timezone == "Asia/Shanghai"
    assert s.warehouse_url == "postgresql://u:secret@db.example/x"


def test_example_config_is_valid():
    example = Path(__file__).resolve().parent.parent / "cxloop.example.yml"
    s = load_settings(example)
    assert s.churn.refit_every_days == 7


def test_goals_default_to_the_demo_scales_and_reach_dbt_vars(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    v = load_settings(None).dbt_vars()
    assert [g["name"] for g in v["goals"]] == ["overall_satisfaction", "likelihood_to_renew"]
    assert v["goals"][0]["range"] == [1, 10] and v["goals"][0]["top_box"] == [9, 10]
    assert v["goals"][1]["top_box"] == [5] and v["quadrant_cut"] == "mean"


def test_a_binary_goal_and_target_cuts_from_the_file(tmp_path):
    p = tmp_path / "cxloop.yml"
    p.write_text("goals:\n  satisfied: {column: overall_satisfaction, kind: binary}\n"
                 "domain: {scales: {responses.overall_satisfaction: [0, 1]}}\n"
                 "quadrant: {cut: target, importance_target: 0.2, rating_target: 3.5}\n")
    s = load_settings(p)
    assert s.goals["satisfied"].range == (0, 1) and s.goals["satisfied"].top_box == [1]
    v = s.dbt_vars()
    assert v["goals"] == [{"name": "satisfied", "column": "overall_satisfaction",
                           "kind": "binary", "range": [0, 1], "top_box": [1]}]
    assert (v["quadrant_cut"], v["quadrant_rating_target"]) == ("target", 3.5)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("goals:\n  g: {column: no_such, range: [1, 5]}\n",
         "goals.g.column: Value error, column 'no_such' is not an integer column of responses"),
        ("goals:\n  g: {column: nps}\n", "goals.g: Value error, a numeric goal needs range"),
        ("goals:\n  g: {column: nps, range: [0, 10], top_box: [11]}\n", "top_box [11] outside"),
        ("goals:\n  g: {column: nps, kind: binary, range: [1, 5]}\n", "binary goal has range [0, 1]"),
        ("goals:\n  g: {column: nps, range: [0, 10], topbox: [9]}\n", "goals.g.topbox: unknown key"),
        ("goals: {}\n", "at least one goal"),
        ("quadrant: {cut: target}\n", "set both importance_target"),
        ("quadrant: {cut: mode}\n", "quadrant.cut"),
    ],
)
def test_bad_goals_and_quadrant_settings_are_named(tmp_path, text, needle):
    p = tmp_path / "cxloop.yml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_a_goal_outside_its_validation_scale_is_a_config_error(tmp_path):
    """A binary goal on a 1-10 column would have every 0 quarantined before it counts."""
    p = tmp_path / "cxloop.yml"
    p.write_text("goals:\n  sat:\n    column: overall_satisfaction\n    kind: binary\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert "goals.sat: range [0, 1] is outside domain.scales responses.overall_satisfaction" \
        in str(e.value)
    p.write_text(p.read_text() + "domain:\n  scales:\n    responses.overall_satisfaction: [0, 1]\n")
    assert load_settings(p).goals["sat"].range == (0, 1)
