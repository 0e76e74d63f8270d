"""When a dbt build tests every row: the configured night of the week, or on request."""

from __future__ import annotations

from datetime import date

import pytest

from flows.config import load_settings
from flows.errors import ConfigError
from flows.transform import full_tests_var

SUNDAY, MONDAY = date(2026, 11, 29), date(2026, 11, 30)


def test_the_configured_night_tests_every_row_and_the_others_the_slice(tmp_path, monkeypatch):
    monkeypatch.delenv("CXLOOP_FULL_TESTS", raising=False)
    default = load_settings(None, home=str(tmp_path))
    assert default.full_tests_weekday == "sunday"
    assert full_tests_var(default, SUNDAY) == {"full_tests": True}
    assert full_tests_var(default, MONDAY) == {}
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text("full_tests_weekday: monday\n")
    assert full_tests_var(load_settings(cfg, home=str(tmp_path)), MONDAY) == {"full_tests": True}
    cfg.write_text("full_tests_weekday: null\n")
    never = load_settings(cfg, home=str(tmp_path))
    assert full_tests_var(never, SUNDAY) == {}
    monkeypatch.setenv("CXLOOP_FULL_TESTS", "1")  # by hand, any night
    assert full_tests_var(never, MONDAY) == {"full_tests": True}


def test_a_misspelt_weekday_is_a_configuration_error(tmp_path):
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text("full_tests_weekday: sundy\n")
    with pytest.raises(ConfigError, match="full_tests_weekday"):
        load_settings(cfg, home=str(tmp_path))
