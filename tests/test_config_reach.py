"""A cxloop.yml outside the working directory reaches every stage, key group by key group.

The run is started from a third folder with ``--config``; nothing is passed through the
environment. Each key group is checked by what it does (a GB18030 file with ``;`` loads,
the custom catalogue's touchpoint is not quarantined, only the custom task rule fires,
the warehouse lives in the configured home and database) and by the settings the run
recorded in ``ops.pipeline_runs``, which are the ones every stage received.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest
import yaml

from flows.config import REPO_ROOT

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
DAYS = 30
NEW_TOUCHPOINT = "reach_test_kiosk"
CHINESE_NAME = "张伟"
NEW_REGION = "islands"


def _cxloop(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "flows", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def _write_company(root: Path) -> Path:
    """A company folder: its own landing, reference files, task rules and cxloop.yml."""
    from flows import demo

    landing = root / "landing"
    demo.generate(landing, customers=500, days=DAYS, start=START, seed=23)
    # The CRM exports customers in GB18030 with ';' between fields.
    for f in (landing / "crm" / "customers").glob("*/*.csv"):
        rows = list(csv.reader(f.open(encoding="utf-8", newline="")))
        if len(rows) > 1:
            rows[1][rows[0].index("full_name")] = CHINESE_NAME
            rows[1][rows[0].index("region")] = NEW_REGION
        buf = io.StringIO()
        csv.writer(buf, delimiter=";", lineterminator="\n").writerows(rows)
        f.write_bytes(buf.getvalue().encode("gb18030"))
    # The CRM's other extracts use ';' too (one delimiter per source); its orders export
    # calls the amount "Order Amount" (a mapping renames it); one customer lives in a
    # region only this company has (domain.categories).
    for entity in ("subscriptions", "orders", "interactions"):
        for f in (landing / "crm" / entity).glob("*/*.csv"):
            rows = list(csv.reader(f.open(encoding="utf-8", newline="")))
            if entity == "interactions" and len(rows) > 1:
                rows[1][rows[0].index("touchpoint_code")] = NEW_TOUCHPOINT
            if entity == "orders":
                rows[0][rows[0].index("amount")] = "Order Amount"
            buf = io.StringIO()
            csv.writer(buf, delimiter=";", lineterminator="\n").writerows(rows)
            f.write_bytes(buf.getvalue().encode("gb18030"))
    ref = root / "reference"
    ref.mkdir()
    seeds = REPO_ROOT / "dbt_project" / "seeds"
    catalogue = list(csv.DictReader((seeds / "touchpoint_catalogue.csv").open(encoding="utf-8")))
    extra = {**catalogue[-1], "touchpoint_code": NEW_TOUCHPOINT,
             "touchpoint_name": "Reach-test kiosk",
             "stage_order": str(max(int(r["stage_order"]) for r in catalogue) + 1),
             "is_key_touchpoint": "false"}
    with (ref / "catalogue.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(catalogue[0]))
        w.writeheader()
        w.writerows([*catalogue, extra])
    shutil.copyfile(seeds / "owner_routing.csv", ref / "routing.csv")
    shutil.copyfile(seeds / "survey_items.csv", ref / "items.csv")
    (root / "rules.yml").write_text(yaml.safe_dump({"rules": [{
        "name": "reach_test_rule", "subject": "touchpoint", "severity": 1, "sla_hours": 24,
        "title": "Look at {subject_id}",
        "model": "int_task_candidates__fix_first_touchpoint"}]}))
    config = root / "conf" / "cxloop.yml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({
        "timezone": "Pacific/Kiritimati",
        "landing": "../landing",
        "home": "../home",
        "database": "reach_db",
        "lock_timeout_seconds": 17,
        "stage_timeout_seconds": 1234,
        "sources": {"crm": {"kind": "files", "encoding": "gb18030", "delimiter": ";",
                            "entities": ["customers", "orders"],
                            "mapping": {"orders": {"rename": {"Order Amount": "amount"}}}},
                    "survey": {"kind": "files"}},
        "domain": {"categories": {
            "customers.region": ["north", "south", "east", "west", NEW_REGION]}},
        "goals": {"overall": {"column": "overall_satisfaction", "range": [1, 10],
                              "top_box": [9, 10]},
                  "renewal": {"column": "likelihood_to_renew", "range": [1, 5]}},
        "quadrant": {"cut": "median"},
        "subscriptions": {"active_statuses": ["active"]},
        "reference": {"touchpoint_catalogue": "../reference/catalogue.csv",
                      "owner_routing": "../reference/routing.csv",
                      "survey_items": "../reference/items.csv"},
        "tasks": "../rules.yml",
        "churn": {"refit_every_days": 3, "min_concordance": 0.55, "min_events": 5},
    }))
    return config


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("company", numbered=True))
    config = _write_company(root)
    elsewhere = Path(tmp_path_factory.mktemp("elsewhere"))
    end = START + timedelta(days=DAYS - 1)
    res = _cxloop(elsewhere, "backfill", "--config", str(config), "--start", str(START),
                  "--end", str(end))
    yield root, config, elsewhere, res
    _cxloop(elsewhere, "warehouse", "stop", "--config", str(config))


def _query(root: Path, sql: str) -> list[tuple]:
    from flows.warehouse import open_warehouse

    wh = open_warehouse(root / "home", database="reach_db", migrate_schema=False)
    conn = psycopg2.connect(wh.url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_run_completes_from_another_folder(company):
    root, _, elsewhere, res = company
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (root / "home").is_dir() and not (elsewhere / ".cxloop").exists()


def test_sources_encoding_and_delimiter_reach_ingestion(company):
    root, *_ = company
    assert _query(root, "select count(*) from ops.load_batches where status = 'rejected'") \
        == [(0,)]
    # The first row of every customers file carries the name.
    files = [f for f in (root / "landing" / "crm" / "customers").glob("*/*.csv")
             if len(f.read_bytes().splitlines()) > 1]
    assert _query(root, f"select count(*) from raw.customers where full_name = '{CHINESE_NAME}'") \
        == [(len(files),)]


def test_reference_catalogue_reaches_validation_and_dbt(company):
    root, *_ = company
    # One row of every interactions file was moved to the new touchpoint.
    files = [f for f in (root / "landing" / "crm" / "interactions").glob("*/*.csv")
             if len(f.read_bytes().splitlines()) > 1]
    assert _query(root, "select count(*) from raw.interactions "
                        f"where touchpoint_code = '{NEW_TOUCHPOINT}'") == [(len(files),)]
    assert _query(root, "select count(*) from quarantine.interactions") == [(0,)]
    assert _query(root, "select count(*) from staging.touchpoint_catalogue "
                        f"where touchpoint_code = '{NEW_TOUCHPOINT}'") == [(1,)]


def test_domain_and_mapping_reach_validation(company):
    root, *_ = company
    assert _query(root, f"select count(*) from raw.customers where region = '{NEW_REGION}'") \
        != [(0,)]
    assert _query(root, "select count(*) from quarantine.customers") == [(0,)]
    assert _query(root, "select count(*) from raw.orders where amount is null") == [(0,)]
    assert _query(root, "select count(*) from raw.orders") != [(0,)]


def test_goals_and_quadrant_reach_drivers_and_marts(company):
    root, *_ = company
    assert {r[0] for r in _query(root, "select distinct goal from marts.mart_goal_trend")} \
        == {"overall", "renewal"}
    assert _query(root, "select distinct cut_rule from marts.mart_priority_quadrant") \
        == [("median",)]


def test_task_rules_file_reaches_the_actions_stage(company):
    root, *_ = company
    [(n,)] = _query(root, "select count(*) from "
                          "intermediate.int_task_candidates__fix_first_touchpoint")
    assert n > 0
    assert _query(root, "select rule, count(*) from ops.improvement_tasks group by 1") \
        == [("reach_test_rule", n)]


def test_run_record_holds_the_settings_every_stage_received(company):
    root, config, *_ = company
    [(settings, warnings)] = _query(root, "select settings, warnings from ops.pipeline_runs")
    assert settings["config_path"] == str(config.resolve())
    assert settings["timezone"] == "Pacific/Kiritimati"
    assert settings["lock_timeout_seconds"] == 17 and settings["stage_timeout_seconds"] == 1234
    assert settings["churn"]["refit_every_days"] == 3 and settings["churn"]["min_events"] == 5
    assert settings["sources"]["crm"]["encoding"] == "gb18030"
    assert settings["database"] == "reach_db"
    assert settings["subscriptions"]["active_statuses"] == ["active"]
    assert settings["quadrant"]["cut"] == "median"
    # Expected daily: customers and orders. A warning names each one missing on some day,
    # judged against the landing folder itself.
    for entity in ("customers", "orders"):
        present = {p.name for p in (root / "landing" / "crm" / entity).iterdir()}
        missing = DAYS - len(present)
        named = [w for w in warnings if w.startswith(f"crm/{entity}: ")]
        assert len(named) == (1 if missing else 0), warnings
        if missing:
            assert f"no extract on {missing} of {DAYS} day(s)" in named[0]


def test_timezone_reaches_the_nightly_default_date(company):
    root, config, elsewhere, _ = company
    res = _cxloop(elsewhere, "run", "--config", str(config))
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert res.returncode == 2
    assert f"for {today}" in res.stderr, res.stderr[-1500:]


def test_prefect_yaml_schedule_and_serve_share_the_configured_zone(company):
    from prefect.utilities.templating import apply_values

    from flows.cli import deployment_env
    from flows.config import load_settings

    _, config, *_ = company
    settings = load_settings(config)
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    env = deployment_env(settings)
    os.environ.update(env)
    try:
        rendered = apply_values(spec, os.environ, remove_notset=False)
    finally:
        for k in env:
            os.environ.pop(k, None)
    nightly = next(d for d in rendered["deployments"] if d["name"] == "nightly")
    assert nightly["schedules"][0]["timezone"] == "Pacific/Kiritimati"
    assert nightly["parameters"]["config"] == str(config.resolve())


def test_cxloop_deploy_registers_the_configured_zone_and_config(company, prefect_server):
    """`cxloop deploy` against a real Prefect server: the nightly deployment's schedule
    runs in the zone of cxloop.yml and its flow runs receive that file."""
    if not prefect_server:
        pytest.skip("needs the session's Prefect server")
    import json

    _, config, elsewhere, _ = company
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")},
           "PREFECT_API_URL": prefect_server}
    subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "cxloop-process",
                    "--type", "process"], env=env, capture_output=True, timeout=120)
    res = subprocess.run([sys.executable, "-m", "flows", "deploy", "--config", str(config)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=elsewhere)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    from prefect.client.orchestration import get_client

    async def nightly() -> dict:
        async with get_client() as client:
            d = await client.read_deployment_by_name("nightly/nightly")
            return json.loads(d.model_dump_json())

    import asyncio

    d = asyncio.run(nightly())
    assert d["parameters"]["config"] == str(config.resolve())
    assert d["schedules"][0]["schedule"]["timezone"] == "Pacific/Kiritimati"
