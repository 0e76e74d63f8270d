"""Crash recovery: a run killed in the middle of a stage, then re-run, leaves the same
marts and tasks as a run that was never interrupted.

Each crash is a real process death (``os._exit(137)`` at a failpoint, as ``kill -9``):
no Python cleanup runs, so only what the database committed survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest
from snapshot import warehouse_snapshot

from flows.demo import generate

pytestmark = pytest.mark.e2e

START = date(2026, 7, 1)
DAYS = 30


def _cli(home: Path, *args: str, failpoint: str | None = None) -> int:
    """Run the CLI in its own process group, output to files, then reap the whole group.

    A crashed run leaves its Prefect server child behind (as after a real kill -9); it
    would hold captured pipes open, so output goes to files and the group is killed.
    """
    env = {**os.environ, "CXLOOP_HOME": str(home)}
    env.pop("CXLOOP_WAREHOUSE_URL", None)
    env.pop("CXLOOP_FAILPOINT", None)
    if failpoint:
        env["CXLOOP_FAILPOINT"] = failpoint
    log = home / f"cli-{len(list(home.glob('cli-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=home, start_new_session=True)
        try:
            code = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if failpoint is None and code != 0:
        raise AssertionError(log.read_text()[-3000:])
    return code


def _backfill(home: Path, landing: Path, failpoint: str | None = None, *extra: str) -> int:
    end = START + timedelta(days=DAYS - 1)
    return _cli(home, "backfill", "--start", str(START), "--end", str(end), "--landing",
                str(landing), *extra, failpoint=failpoint)


def _url(home: Path) -> str:
    from flows.warehouse import open_warehouse

    return open_warehouse(home, migrate_schema=False).url


def _snapshot(home: Path) -> dict[str, str]:
    return warehouse_snapshot(_url(home))


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


# Two crash points run in every `make test`; the rest (same mechanism, other stages) in
# `make test-all`, the scheduled full run.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("failpoint", [
    pytest.param("stage:validate+load", marks=SLOW),           # before anything is loaded
    "load:after-batch-commit",       # in the middle of loading: one batch committed
    pytest.param("stage:dbt build", marks=SLOW),               # loaded, marts not built
    pytest.param("stage:churn", marks=SLOW),                   # marts built, no scores
    "stage:dbt build after scores",  # scores written, downstream marts not rebuilt
    pytest.param("stage:tasks", marks=SLOW),                   # marts final, no tasks
])
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


def test_incremental_run_after_one_new_day_equals_full_refresh(landing, tmp_path):
    """The late-data lookback makes an incremental nightly equal a rebuild from raw."""
    from flows.warehouse import stop_embedded

    home = tmp_path / "inc"
    home.mkdir()
    last = START + timedelta(days=DAYS - 1)

    def cli(*args: str) -> None:
        _cli(home, *args, "--landing", str(landing))

    try:
        cli("backfill", "--start", str(START), "--end", str(last - timedelta(days=1)))
        cli("run", "--date", str(last))
        incremental = _snapshot(home)
        cli("backfill", "--start", str(START), "--end", str(last), "--full-refresh")
        full = _snapshot(home)
        for table in ("marts.fct_touchpoint_daily", "marts.mart_touchpoint_scorecard"):
            assert incremental[table] == full[table], table
    finally:
        stop_embedded(home)


@pytest.mark.slow
def test_dask_task_runner_gives_the_same_marts(landing, uninterrupted, tmp_path):
    """Entities loaded in parallel on a Dask LocalCluster: same warehouse as the default."""
    pytest.importorskip("prefect_dask")  # installed by the dev extra
    from flows.warehouse import stop_embedded

    home = tmp_path / "dask"
    home.mkdir()
    try:
        _backfill(home, landing, None, "--task-runner", "dask")
        got = _snapshot(home)
        diff = {k: (v, got.get(k)) for k, v in uninterrupted.items() if got.get(k) != v}
        assert not diff, diff
    finally:
        stop_embedded(home)
