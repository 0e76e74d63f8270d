"""Crash recovery: a run killed in the middle of a stage, then re-run, leaves the same
marts and tasks as a run that was never interrupted.

Each crash is a real process death (``os._exit(137)`` at a failpoint, as ``kill -9``):
no Python cleanup runs, so only what the database committed survives.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest

from flows.demo import generate

pytestmark = pytest.mark.e2e

START = date(2026, 7, 1)
DAYS = 30
VOLATILE = {"scored_at", "built_at", "as_of_at"}  # wall-clock stamps, not content


def _backfill(home: Path, landing: Path, failpoint: str | None = None) -> int:
    env = {**os.environ, "CXLOOP_HOME": str(home)}
    env.pop("CXLOOP_WAREHOUSE_URL", None)
    env.pop("CXLOOP_FAILPOINT", None)
    if failpoint:
        env["CXLOOP_FAILPOINT"] = failpoint
    end = START + timedelta(days=DAYS - 1)
    res = subprocess.run([sys.executable, "-m", "flows", "backfill", "--start", str(START),
                          "--end", str(end), "--landing", str(landing)],
                         env=env, capture_output=True, text=True, timeout=600, cwd=home)
    if failpoint is None and res.returncode != 0:
        raise AssertionError(res.stdout[-2000:] + res.stderr[-2000:])
    return res.returncode


def _url(home: Path) -> str:
    from flows.warehouse import open_warehouse

    return open_warehouse(home, migrate_schema=False).url


def _snapshot(home: Path) -> dict[str, str]:
    """A content hash per marts table, plus the tasks and raw row counts."""
    conn = psycopg2.connect(_url(home))
    out: dict[str, str] = {}
    with conn, conn.cursor() as cur:
        cur.execute("select table_schema, table_name from information_schema.tables "
                    "where table_schema = 'marts' order by 2")
        tables = [r[1] for r in cur.fetchall()]
        for t in tables:
            cur.execute(f"select * from marts.{t}")
            cols = [d.name for d in cur.description]
            keep = [i for i, c in enumerate(cols) if c not in VOLATILE]
            rows = sorted(json.dumps([_norm(r[i]) for i in keep], default=str)
                          for r in cur.fetchall())
            out[f"marts.{t}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
        cur.execute("select task_id, natural_key, status, owner_person, priority, "
                    "escalation_level, condition_active from ops.improvement_tasks order by 1")
        out["ops.improvement_tasks"] = hashlib.sha256(
            json.dumps(cur.fetchall(), default=str).encode()).hexdigest()[:16]
        for t in ("customers", "interactions", "responses", "item_ratings"):
            cur.execute(f"select count(*) from raw.{t}")
            out[f"raw.{t}"] = str(cur.fetchone()[0])
    conn.close()
    return out


def _norm(v):
    return round(v, 8) if isinstance(v, float) else v


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recovery") / "landing"
    generate(out, customers=500, days=DAYS, start=START, seed=5)
    return out


@pytest.fixture(scope="module")
def uninterrupted(landing, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("clean")
    _backfill(home, landing)
    snap = _snapshot(home)
    from flows.warehouse import stop_embedded

    stop_embedded(home)
    return snap


@pytest.mark.parametrize("failpoint", ["load:after-batch-commit", "stage:churn", "stage:tasks"])
def test_killed_run_then_rerun_equals_uninterrupted_run(failpoint, landing, uninterrupted,
                                                        tmp_path):
    from flows.warehouse import stop_embedded

    home = tmp_path / "h"
    home.mkdir()
    try:
        assert _backfill(home, landing, failpoint) == 137
        _backfill(home, landing)
        got = _snapshot(home)
        diff = {k: (v, got.get(k)) for k, v in uninterrupted.items() if got.get(k) != v}
        assert not diff, diff
        conn = psycopg2.connect(_url(home))
        with conn, conn.cursor() as cur:
            cur.execute("select status from ops.pipeline_runs order by started_at")
            assert [r[0] for r in cur.fetchall()] == ["crashed", "completed"]
        conn.close()
    finally:
        stop_embedded(home)
