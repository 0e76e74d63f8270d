"""End to end: the "utility" profile through the whole pipeline, configured from elsewhere.

What it proves (issue 12, "A second demo profile"): a company whose exports do not look
like the contract - its own headers, labels, dd/mm/yyyy dates, 0-10 item scores with 0 =
"not applicable", a yes/no goal, its own segments, tariffs and touchpoints - runs with
nothing but a cxloop.yml and reference files kept outside the repository, from a working
directory that is neither the repository nor the configuration folder; and the answers
match what the generator planted: the two top drivers of "satisfied" are found, the
negative driver is reported as negative, segment and tariff values load without being
folded into the demo's, and nothing is quarantined except the planted faults.

Names of marts columns that other branches are still settling are constants below.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest

pytestmark = [
    pytest.mark.e2e,
]

CUSTOMERS, DAYS, START, FAULTS = 800, 60, date(2026, 7, 1), 0.003
# --- names owned by other branches (change here if they move) ---------------------------
DRIVER_MART = "marts.mart_driver_importance"
QUADRANT_MART = "marts.mart_priority_quadrant"
SIGN_COLUMNS = ("effect_sign", "direction")  # whichever the quadrant mart has
NEGATIVE_VALUES = ("negative", "-1", "-")
DRIVER_QUADRANTS = ("fix_first", "keep_up")  # where a negative effect must never be
SCORECARD_MART = "marts.mart_touchpoint_scorecard"
GOAL_COLUMN, SEGMENT_ALL, IMPORTANCE = "goal", "all", "importance"
ATTRIBUTES_COLUMN = "attributes"


def _cxloop(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXLOOP_HOME": str(home), "COLUMNS": "160",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("CXLOOP_WAREHOUSE_URL", None)
    return subprocess.run([sys.executable, "-m", "flows", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def utility_run(tmp_path_factory):
    """Generate, move the configuration out, backfill from a third folder."""
    company = Path(tmp_path_factory.mktemp("utility_e2e"))
    landing, config_dir, workdir = company / "exports", company / "config", company / "work"
    workdir.mkdir()
    home = Path(tempfile.mkdtemp(prefix="cxu-", dir="/tmp"))  # socket paths are short
    gen = _cxloop("demo", "generate", "--profile", "utility", "--out", str(landing),
                  "--customers", str(CUSTOMERS), "--days", str(DAYS),
                  "--start", START.isoformat(), "--faults", str(FAULTS),
                  cwd=company, home=home)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    shutil.copytree(landing / "_config", config_dir)
    cfg = config_dir / "cxloop.yml"
    text = cfg.read_text(encoding="utf-8")
    assert "\nlanding: ..\n" in text
    cfg.write_text(text.replace("\nlanding: ..\n", f"\nlanding: {landing}\n"), encoding="utf-8")
    shutil.rmtree(landing / "_config")  # the run must use the copy, not the original
    end = START + timedelta(days=DAYS - 1)
    run = _cxloop("backfill", "--config", str(cfg), "--start", START.isoformat(),
                  "--end", end.isoformat(), cwd=workdir, home=home)
    url = _cxloop("warehouse", "url", "--config", str(cfg), cwd=workdir, home=home)
    truth = json.loads((landing / "_truth" / "truth.json").read_text(encoding="utf-8"))
    with open(landing / "_faults" / "manifest.csv", newline="", encoding="utf-8") as f:
        manifest = list(csv.DictReader(f))
    yield {"run": run, "url": url.stdout.strip(), "truth": truth, "manifest": manifest,
           "landing": landing, "workdir": workdir}
    _cxloop("warehouse", "stop", "--config", str(cfg), cwd=workdir, home=home)
    shutil.rmtree(home, ignore_errors=True)


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _columns(url: str, table: str) -> list[str]:
    schema, name = table.split(".")
    return [r[0] for r in _query(url, "select column_name from information_schema.columns "
                                 "where table_schema = %s and table_name = %s", (schema, name))]


def test_backfill_with_a_config_from_elsewhere_exits_0(utility_run):
    run = utility_run["run"]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert not (utility_run["workdir"] / "cxloop.yml").exists()


def test_planted_top_drivers_are_the_top_items(utility_run):
    d = utility_run["truth"]["drivers"]
    rows = _query(utility_run["url"],
                  f"select item_code from {DRIVER_MART} where {GOAL_COLUMN} = %s "
                  f"and segment = %s order by {IMPORTANCE} desc limit 2",
                  (d["goal"], SEGMENT_ALL))
    assert {r[0] for r in rows} == set(d["top_drivers"]), rows


def test_negative_driver_is_reported_as_negative_and_not_a_driver_to_fix(utility_run):
    url, d = utility_run["url"], utility_run["truth"]["drivers"]
    cols = _columns(url, QUADRANT_MART)
    sign = next((c for c in SIGN_COLUMNS if c in cols), None)
    assert sign, f"{QUADRANT_MART} has none of {SIGN_COLUMNS}: {cols}"
    rows = _query(url, f"select {sign}::text, quadrant from {QUADRANT_MART} "
                  f"where item_code = %s and {GOAL_COLUMN} = %s and segment = %s",
                  (d["negative_driver"], d["goal"], SEGMENT_ALL))
    assert rows, f"{d['negative_driver']} missing from {QUADRANT_MART}"
    for value, quadrant in rows:
        assert value.lower() in NEGATIVE_VALUES, (sign, value)
        assert quadrant not in DRIVER_QUADRANTS, quadrant
    positive = _query(url, f"select item_code, {sign}::text from {QUADRANT_MART} "
                      f"where item_code = any(%s) and {GOAL_COLUMN} = %s and segment = %s",
                      (d["top_drivers"], d["goal"], SEGMENT_ALL))
    assert positive and all(v.lower() not in NEGATIVE_VALUES for _, v in positive), positive


def test_segment_plan_and_region_values_load_without_folding(utility_run):
    url, dom = utility_run["url"], utility_run["truth"]["domain"]
    for column, expected in (("segment", "segments"), ("plan", "plans"),
                             ("region", "regions")):
        got = {r[0] for r in _query(url, f"select distinct {column} from raw.customers")}
        assert got == set(dom[expected]), (column, got)
    plans = {r[0] for r in _query(url, "select distinct plan from raw.subscriptions")}
    assert plans == set(dom["plans"])
    keys = {r[0] for r in _query(url, f"select distinct jsonb_object_keys({ATTRIBUTES_COLUMN}) "
                                 "from raw.customers")}
    assert set(dom["attributes"]) <= keys, keys


def test_nothing_quarantined_but_the_planted_faults(utility_run):
    url, landing, manifest = utility_run["url"], utility_run["landing"], utility_run["manifest"]
    assert manifest, "the profile planted no faults"
    planted = {(str(landing / m["file"]), int(m["row"])) for m in manifest}
    rejected = _query(url, "select source_file, error from ops.load_batches "
                      "where status = 'rejected'")
    assert not rejected, rejected
    tables = [r[0] for r in _query(url, "select table_name from information_schema.tables "
                                   "where table_schema = 'quarantine'")]
    quarantined: dict[tuple[str, int], str] = {}
    for t in tables:
        for f, row, reasons in _query(url, f'select _source_file, _row_number, reasons '
                                      f'from quarantine."{t}"'):
            quarantined[(f, int(row))] = reasons
    extra = {k: v for k, v in quarantined.items() if k not in planted}
    assert not extra, (f"{len(extra)} clean rows quarantined, by reason: "
                       f"{Counter(extra.values()).most_common(5)}")
    missed = planted - set(quarantined)
    assert not missed, f"{len(missed)} planted faults loaded, e.g. {sorted(missed)[:5]}"
    per_entity = Counter(m["entity"] for m in manifest)
    assert sum(per_entity.values()) == len(quarantined)


def test_item_ratings_reach_the_scorecard_for_every_touchpoint(utility_run):
    items = utility_run["truth"]["drivers"]["items"]
    expected = {v["touchpoint_code"] for v in items.values()}
    got = {r[0] for r in _query(utility_run["url"],
                                f"select distinct touchpoint_code from {SCORECARD_MART}")}
    assert expected <= got, sorted(expected - got)
