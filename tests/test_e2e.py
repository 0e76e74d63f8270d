"""End to end: `cxloop demo` at small scale, then what the warehouse holds, then a re-run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from snapshot import warehouse_snapshot

from flows.entities import ENTITIES

pytestmark = pytest.mark.e2e

CXLOOP = [sys.executable, "-m", "flows"]


def _cxloop(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXLOOP_HOME": str(home), "COLUMNS": "160"}
    env.pop("CXLOOP_WAREHOUSE_URL", None)
    res = subprocess.run([*CXLOOP, *args], env=env, capture_output=True, text=True, timeout=900,
                         cwd=home)
    if check and res.returncode != 0:
        raise AssertionError(f"cxloop {' '.join(args)} exited {res.returncode}\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def _counts(url: str) -> dict[str, int]:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("select table_schema || '.' || table_name from information_schema.tables "
                    "where table_schema in ('raw', 'marts') and table_name not like '\\_stage%' "
                    "order by 1")
        tables = [r[0] for r in cur.fetchall()] + ["ops.improvement_tasks"]
        out = {}
        for t in tables:
            cur.execute(f"select count(*) from {t}")
            out[t] = cur.fetchone()[0]
    conn.close()
    return out


def _extract_rows(landing: Path) -> dict[str, int]:
    rows = {}
    for name, e in ENTITIES.items():
        n = 0
        for f in (landing / e.source / name).glob("*/*.csv"):
            with open(f, newline="", encoding="utf-8") as fh:
                n += sum(1 for _ in csv.reader(fh)) - 1
        rows[name] = n
    return rows


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = Path(tmp_path_factory.mktemp("e2e"))
    first = _cxloop(home, "demo", "--customers", "1000", "--days", "90")
    yield home, first
    _cxloop(home, "warehouse", "stop", check=False)


def test_demo_prints_a_manager_summary(demo_home):
    _, first = demo_home
    out = first.stdout
    assert "Worst touchpoints" in out and "Customers most at risk" in out
    assert "Improvement tasks by owner" in out
    assert "completed" in out


def test_a_run_parses_the_dbt_project_once(demo_home):
    # Every dbt invocation of a run passes the same vars: dbt re-parses the whole project
    # when they differ from its last invocation's, which cost each later build and the docs
    # 3-6 s. The first demo run's log: one full parse, then none.
    home, _ = demo_home
    log = "".join(p.read_text(errors="replace")
                  for p in sorted((home / "dbt" / "logs").glob("dbt.log*")))
    invocations = log.count("Running with dbt=")
    assert invocations >= 4, invocations  # models, after scores, after tasks, docs
    assert log.count("Unable to do partial parsing") == 1
    assert log.count("Nothing changed, skipping partial parsing") == invocations - 1


def test_raw_holds_every_extract_row_and_every_mart_is_filled(demo_home):
    home, _ = demo_home
    url = _cxloop(home, "warehouse", "url").stdout.strip()
    counts = _counts(url)
    landing = home / "demo" / "landing"
    assert landing.is_dir()
    expected = _extract_rows(landing)
    assert all(n > 0 for n in expected.values()), expected
    for name, n in expected.items():
        assert counts[f"raw.{name}"] == n, name
    # the task backlog is empty while every team is within its capacity (the demo's are)
    marts = {t: n for t, n in counts.items() if t.startswith("marts.")
             and t != "marts.mart_task_backlog"}
    assert len(marts) >= 10
    assert all(n > 0 for n in marts.values()), marts
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("select count(*), count(*) filter (where owner_person is null or "
                    "owner_person = '') from ops.improvement_tasks")
        n_tasks, ownerless = cur.fetchone()
        cur.execute("select status from ops.pipeline_runs")
        statuses = [r[0] for r in cur.fetchall()]
    conn.close()
    assert n_tasks > 0 and ownerless == 0
    assert statuses == ["completed"]


def test_second_demo_run_changes_no_counts(demo_home):
    home, _ = demo_home
    url = _cxloop(home, "warehouse", "url").stdout.strip()
    before, before_content = _counts(url), warehouse_snapshot(url)
    second = _cxloop(home, "demo", "--customers", "1000", "--days", "90")
    assert "skipped" in second.stdout
    assert _counts(url) == before
    after = warehouse_snapshot(url)
    assert {k: v for k, v in after.items() if v != before_content.get(k)} == {}
    # nothing the docs site shows changed: it is kept, not generated again
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("select stages -> 'docs' ->> 'detail' from ops.pipeline_runs "
                    "order by started_at")
        docs = [r[0] for r in cur.fetchall()]
    conn.close()
    assert len(docs) == 2 and docs[0].startswith("regenerated for"), docs
    assert docs[1].endswith("not regenerated"), docs
    assert (home / "dbt" / "docs" / "index.html").is_file()


def test_html_report_renders_its_plots_in_headless_chromium(demo_home, tmp_path):
    import shutil

    home, _ = demo_home
    report = home / "reports" / "latest.html"
    assert report.exists()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    res = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path}", "--virtual-time-budget=5000",
         "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = res.stdout
    for plot in ("survival", "quadrant", "trends", "tasks"):
        assert f'id="plot-{plot}"' in dom, plot
    # The page's own check: every plot image decoded in the browser.
    n_plots = dom.count('class="plot"')
    assert n_plots >= 4
    assert f'data-plots-rendered="{n_plots}"' in dom


def test_planted_touchpoints_land_in_the_right_quadrants(demo_home):
    """The generator's ground truth: billing hurts most (fix first), store_visit is overkill."""
    import json

    home, _ = demo_home
    truth = json.loads((home / "demo" / "landing" / "_truth" / "truth.json").read_text())
    planted_fix, planted_overkill = truth["planted"]["fix_first"], truth["planted"]["possible_overkill"]
    url = _cxloop(home, "warehouse", "url").stdout.strip()
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("select touchpoint_code, quadrant from marts.mart_priority_quadrant "
                    "where is_headline")
        quadrant = dict(cur.fetchall())
    conn.close()
    for tp in planted_fix:
        assert quadrant[tp] == "fix_first", quadrant
    for tp in planted_overkill:
        assert quadrant[tp] != "fix_first", quadrant
        assert quadrant[tp] in ("possible_overkill", "low_priority"), quadrant
