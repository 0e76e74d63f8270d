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
