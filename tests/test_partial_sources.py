"""Every entity is optional: a survey-only and a CRM-only landing each complete with exit 0.

A pure survey programme gets the survey marts and the quadrant, and the churn stage says
in one line why it was skipped; a CRM without surveys gets churn and value, and the
driver stage is skipped. Stages that need what is missing never crash the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest
import yaml

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
DAYS = 40


def _run_only(root: Path, full: Path, source: str) -> tuple[dict, str]:
    """Backfill a landing holding only ``source``'s folders; returns summary and the URL."""
    landing = root / "landing"
    shutil.copytree(full / source, landing / source)
    config = root / "cxloop.yml"
    config.write_text(yaml.safe_dump({"landing": "landing", "home": "home",
                                      "churn": {"min_events": 5}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    res = subprocess.run([sys.executable, "-m", "flows", "backfill", "--config", str(config),
                          "--start", str(START), "--end", str(START + timedelta(days=DAYS - 1)),
                          "--json"], env=env, capture_output=True, text=True, timeout=600,
                         cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    url = subprocess.run([sys.executable, "-m", "flows", "warehouse", "url", "--config",
                          str(config)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=root).stdout.strip()
    return json.loads(res.stdout), url, root


def _count(url: str, table: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select count(*) from {table}")  # test's own constant names
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def full_landing(tmp_path_factory) -> Path:
    from flows import demo

    out = Path(tmp_path_factory.mktemp("full")) / "landing"
    demo.generate(out, customers=500, days=DAYS, start=START, seed=31)
    return out


@pytest.fixture(scope="module")
def survey_only(tmp_path_factory, full_landing):
    root = Path(tmp_path_factory.mktemp("survey_only"))
    yield _run_only(root, full_landing, "survey")
    subprocess.run([sys.executable, "-m", "flows", "warehouse", "stop", "--config",
                    str(root / "cxloop.yml")], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def crm_only(tmp_path_factory, full_landing):
    root = Path(tmp_path_factory.mktemp("crm_only"))
    yield _run_only(root, full_landing, "crm")
    subprocess.run([sys.executable, "-m", "flows", "warehouse", "stop", "--config",
                    str(root / "cxloop.yml")], capture_output=True, timeout=120)


def test_survey_only_gets_survey_marts_and_quadrant_and_skips_churn(survey_only):
    summary, url, _ = survey_only
    assert summary["status"] == "completed"
    churn = summary["stages"]["churn"]
    assert churn.get("skipped") and churn["detail"].startswith("skipped, no customers")
    assert "drivers" in summary["stages"] and not summary["stages"]["drivers"].get("skipped")
    for mart in ("marts.mart_priority_quadrant", "marts.mart_touchpoint_scorecard",
                 "marts.mart_satisfaction_trend", "marts.mart_driver_importance"):
        assert _count(url, mart) > 0, mart


def test_crm_only_gets_churn_and_value_and_skips_drivers(crm_only):
    summary, url, _ = crm_only
    assert summary["status"] == "completed"
    drivers = summary["stages"]["drivers"]
    assert drivers.get("skipped") and "responses" in drivers["detail"]
    assert not summary["stages"]["churn"].get("skipped")
    assert _count(url, "marts.mart_customer_360") > 0
    assert _count(url, "marts.mart_priority_quadrant") == 0


def test_a_failing_stage_still_prints_what_was_loaded(survey_only):
    """A later stage's failure (a rule whose model is missing) leaves the ingestion summary on
    screen."""
    _, _, root = survey_only
    rules = root / "broken_rules.yml"
    rules.write_text(yaml.safe_dump({"rules": [{
        "name": "broken", "subject": "customer", "title": "x {subject_id}",
        "model": "int_task_candidates__no_such_model"}]}))
    config = root / "broken.yml"
    config.write_text(yaml.safe_dump({"landing": "landing", "home": "home",
                                      "tasks": str(rules)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    res = subprocess.run([sys.executable, "-m", "flows", "run", "--config", str(config),
                          "--date", str(START + timedelta(days=DAYS - 1))], env={
                              **env, "COLUMNS": "200"}, capture_output=True, text=True,
                         timeout=600, cwd=root)
    assert res.returncode == 2
    assert "failed in stage tasks" in res.stderr
    assert "batches loaded 0, skipped" in res.stdout  # the summary of what it did
    assert "int_task_candidates__no_such_model" in res.stderr and "Traceback" not in res.stderr
