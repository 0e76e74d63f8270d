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


# Build bookkeeping, not content: when a row was (re)built and as of which run date.
BUILD_COLUMNS = {"built_at", "scored_at", "as_of_at", "as_of_date"}
COMPARED_SCHEMAS = ("staging", "intermediate", "marts")


def _copy_built(cur, into: str) -> list[str]:
    """Copy every dbt relation (tables and views) of the compared schemas into ``into``."""
    cur.execute(f"drop schema if exists {into} cascade")
    cur.execute(f"create schema {into}")
    cur.execute("select table_schema, table_name from information_schema.tables "
                "where table_schema = any(%s) order by 1, 2", (list(COMPARED_SCHEMAS),))
    names = []
    for schema, table in cur.fetchall():
        names.append(f"{schema}__{table}")
        cur.execute(f'create table {into}."{schema}__{table}" as select * from "{schema}"."{table}"')
    return names


def _differences(cur, a: str, b: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """Per relation, rows in ``a`` not in ``b`` and the other way (EXCEPT ALL, build-time
    columns left out)."""
    out = {}
    for name in names:
        cur.execute("select column_name, data_type from information_schema.columns "
                    "where table_schema = %s and table_name = %s order by ordinal_position",
                    (a, name))
        cols = ", ".join(f'"{c}"' + ("::text" if t == "json" else "")
                         for c, t in cur.fetchall() if c not in BUILD_COLUMNS)
        counts = []
        for x, y in ((a, b), (b, a)):
            cur.execute(f'select count(*) from (select {cols} from {x}."{name}" '
                        f'except all select {cols} from {y}."{name}") d')
            counts.append(cur.fetchone()[0])
        if any(counts):
            out[name] = tuple(counts)
    return out


def _redeliver(landing: Path, source: str, entity: str, day: date, column: str,
               value: str) -> None:
    """A correction of ``day``'s ``entity`` file: its first row gone, ``column`` of its
    second set to ``value`` (the file keeps its name, so it replaces the earlier delivery)."""
    [path] = (landing / source / entity / day.isoformat()).glob("*.csv")
    header, first, second, *rest = path.read_text().splitlines()
    cells = second.split(",")
    cells[header.split(",").index(column)] = value
    path.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")


def test_incremental_builds_equal_a_full_refresh(landing, tmp_path):
    """Backfill, a nightly with new rows, then a nightly with a re-delivered earlier day:
    every staging, intermediate and mart relation equals a --full-refresh build of the
    same warehouse (same loaded batches, churn scores and tasks), row for row both ways."""
    import shutil

    from flows import transform
    from flows.config import load_settings
    from flows.warehouse import open_warehouse, stop_embedded

    home = tmp_path / "inc"
    home.mkdir()
    mine = tmp_path / "landing"
    shutil.copytree(landing, mine)
    last = START + timedelta(days=DAYS - 1)

    def cli(*args: str) -> None:
        _cli(home, *args, "--landing", str(mine))

    try:
        cli("backfill", "--start", str(START), "--end", str(last - timedelta(days=2)))
        cli("run", "--date", str(last - timedelta(days=1)))  # a nightly with new rows
        # an earlier day re-delivered, picked up with the next day by a backfill over both:
        # one incremental build as of the latest date sees new rows and a correction
        _redeliver(mine, "survey", "responses", last - timedelta(days=4), "nps", "0")
        # and one of an entity an intermediate kept by customer reads: the first row's
        # customer loses an interaction, the second's has it changed
        _redeliver(mine, "crm", "interactions", last - timedelta(days=4), "wait_seconds", "999")
        # and a response moved to another (older, likely another customer's) invitation:
        # the models kept by key rebuild both invitations and the response
        [older] = (mine / "survey" / "invitations" / (last - timedelta(days=8)).isoformat()
                   ).glob("*.csv")
        header, row, *_ = older.read_text().splitlines()
        other = row.split(",")[header.split(",").index("invitation_id")]
        moved = next(d for d in (last - timedelta(days=k) for k in (3, 2, 1))
                     if len(next((mine / "survey" / "responses" / d.isoformat()).glob("*.csv"))
                            .read_text().splitlines()) >= 3)
        _redeliver(mine, "survey", "responses", moved, "invitation_id", other)
        cli("backfill", "--start", str(last - timedelta(days=4)), "--end", str(last))
        settings = load_settings(home=str(home), landing=str(mine))
        wh = open_warehouse(home, settings.warehouse_url, settings.database,
                            timezone=settings.timezone, migrate_schema=False)
        with wh.transaction() as cur:
            cur.execute("select count(*) from ops.batch_changes")
            assert cur.fetchone()[0] == 3  # each correction was taken as one
            cur.execute("select model from ops.dbt_incremental_builds where not full_build")
            incremental = {r[0] for r in cur.fetchall()}
            # the nightly builds were incremental, by key and by customer
            assert {"stg_survey__responses", "stg_crm__interactions",
                    "int_interactions_enriched", "int_item_ratings_enriched",
                    "int_customer_journey_summaries", "int_invitations_enriched",
                    "int_responses_enriched", "int_driver_inputs",
                    "mart_customer_journeys", "int_churn_observation_states",
                    "int_churn_feature_states"} <= incremental
            # each incremental model's table has an index on built_at: its tests' slice
            # (macros/test_slice.sql) reads the rows a nightly rewrote through it
            cur.execute("""
                select b.model from ops.dbt_incremental_builds as b
                where not exists (
                    select 1 from pg_index as i
                    inner join pg_class as c on c.oid = i.indrelid
                    inner join pg_attribute as a
                        on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                    where c.relname = b.model and a.attname = 'built_at')""")
            assert cur.fetchall() == []
        # mart_task_effects reads the tasks as of its build, before the run's task stage
        # wrote that day's: built again first, it reads the tasks the full build will read
        transform.run_dbt(wh, settings, ["run", "--select", "mart_task_effects"], last)
        with wh.transaction() as cur:
            names = _copy_built(cur, "cmp_incremental")
        transform.build(wh, settings, last, exclude=transform.AFTER_PYTHON, full_refresh=True)
        transform.build(wh, settings, last, select=transform.AFTER_PYTHON, full_refresh=True,
                        extra_vars={"task_dates_from": (last - timedelta(days=4)).isoformat()})
        with wh.transaction() as cur:
            _copy_built(cur, "cmp_full")
            assert len(names) > 40
            assert _differences(cur, "cmp_incremental", "cmp_full", names) == {}
        # nights with nothing new: the churn observations kept from `last` move with the
        # calendar alone (contacts, ratings and answers leave their windows, invitations get
        # old enough to count, an earlier observation date joins: the first extract is
        # START, so START + 29 is one), and still equal a full build of the later date
        churn = ["int_churn_observation_states", "int_churn_observation_priors",
                 "int_churn_observations"]
        later = last + timedelta(days=3)
        for day in (last + timedelta(days=1), later):
            transform.run_dbt(wh, settings, ["build", "--select", *churn], day)
        with wh.transaction() as cur:
            cur.execute("select full_build, run_date from ops.dbt_incremental_builds "
                        "where model = 'int_churn_observation_states'")
            assert cur.fetchone() == (False, later)
            cur.execute("select count(distinct observation_date) from "
                        "intermediate.int_churn_observations")
            dates = cur.fetchone()[0]
            kept = _copy_built(cur, "cmp_kept_churn")
        transform.run_dbt(wh, settings, ["build", "--select", *churn, "--full-refresh"], later)
        with wh.transaction() as cur:
            _copy_built(cur, "cmp_full_churn")
            assert dates == 2  # START + 29 and the run date
            assert _differences(cur, "cmp_kept_churn", "cmp_full_churn",
                                [n for n in kept if "int_churn_observation" in n]) == {}
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
