"""Broken files, hand-crafted: each is a rejected batch naming file, line and problem,
every other file and entity of the day loads, and every row is accounted for in ``ops``.

One landing holds all the cases for one date; one real run (the CLI, real Postgres,
GX and dbt) loads it, and the tests read what it left. The rows come from the demo
generator's first day, so they are valid for the configured domain whatever it is.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from flows.demo import generate

pytestmark = pytest.mark.integration

D = date(2026, 8, 3)
SECRET = "SECRET-CONTENT-7f3a"  # planted in broken files: must never reach a message


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        r = list(csv.reader(f))
    return r[0], r[1:]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _table(header: list[str], rows: list[list[str]]) -> pa.Table:
    return pa.table({h: pa.array([r[i] or None for r in rows], pa.string())
                     for i, h in enumerate(header)})


def build_landing(root: Path) -> dict[str, dict]:
    """The cases, one file each (plus good files beside them); returns what each holds."""
    gen = root / "gen"
    generate(gen, customers=150, days=6, start=D - timedelta(days=5), seed=11)
    landing = root / "landing"
    cases: dict[str, dict] = {}

    def src(ent: str) -> tuple[list[str], list[list[str]]]:
        """The entity's rows of the generated days up to D, as one day's delivery
        (customers: the first day's snapshot only, one row per customer)."""
        source = "survey" if ent in ("invitations", "responses", "item_ratings") else "crm"
        files = sorted((gen / source / ent).glob("*/*.csv"))
        header, rows = _rows(files[0])
        for f in files[1:] if ent not in ("customers", "subscriptions") else []:
            rows += _rows(f)[1]
        return header, rows

    def put(ent: str, name: str, data: bytes) -> Path:
        source = "survey" if ent in ("invitations", "responses", "item_ratings") else "crm"
        folder = landing / source / ent / D.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return folder / name

    # customers: a good file, and a gzip cut in the middle beside it (same entity)
    header, rows = src("customers")
    put("customers", "customers_a.csv", _csv(header, rows[:20]))
    whole = gzip.compress(_csv(header, [[*r[:1], SECRET, *r[2:]] for r in rows[20:]] * 30))
    put("customers", "customers_b.csv.gz", whole[: len(whole) * 2 // 3])
    cases["truncated_gzip"] = {"entity": "customers", "file": "customers_b.csv.gz"}
    put("subscriptions", "subscriptions.csv", _csv(*src("subscriptions")))

    # interactions: a NUL byte in one field of row 2; the other rows load
    header, rows = src("customers")
    ih = ["interaction_id", "customer_id", "touchpoint_code", "channel", "occurred_at",
          "wait_seconds", "handle_seconds", "resolved", "first_contact_resolution"]
    _, irows = src("item_ratings")
    tp = irows[0][3]
    inter = [[f"I{i}", rows[i][0], tp, "web", f"{D} 0{i}:00:00", "30", "120", "true", "true"]
             for i in range(4)]
    data = _csv(ih, inter)
    line2 = data.split(b"\n")[2]
    put("interactions", "interactions.csv",
        data.replace(line2, line2.replace(b",web,", b",w\x00eb,")))
    cases["nul_byte"] = {"entity": "interactions", "file": "interactions.csv", "rows": 4}

    # responses: a parquet file with a list column
    header, rows = src("responses")
    t = _table(header, rows).append_column("tags", pa.array([[SECRET]] * len(rows),
                                                            pa.list_(pa.string())))
    path = put("responses", "responses_tags.parquet", b"")
    pq.write_table(t, path)
    cases["list_column"] = {"entity": "responses", "file": "responses_tags.parquet",
                            "rows": len(rows)}

    # responses: a CSV in gb18030 where the source is read as utf-8 (fixed by config later)
    header, rows = src("responses")
    ci = header.index("comment")
    zh = [[*r[:ci], "账单清楚，谢谢", *r[ci + 1:]] for r in rows]
    put("responses", "responses_zh.csv", _csv(header, zh).decode().encode("gb18030"))
    cases["wrong_encoding"] = {"entity": "responses", "file": "responses_zh.csv",
                               "rows": len(rows)}

    # item_ratings: parquet with wrong types: rating float (one 4.5), responded_at a
    # timestamp; the 4.5 row is quarantined, the rest load
    header, rows = src("item_ratings")
    cols = {h: pa.array([r[i] for r in rows], pa.string()) for i, h in enumerate(header)}
    ratings = [float(r[header.index("rating")]) for r in rows]
    ratings[1] = 4.5
    cols["rating"] = pa.array(ratings, pa.float64())
    cols["responded_at"] = pa.array([r[header.index("responded_at")] for r in rows],
                                    pa.string()).cast(pa.timestamp("s"))
    path = put("item_ratings", "item_ratings_types.parquet", b"")
    pq.write_table(pa.table(cols), path)
    cases["wrong_types"] = {"entity": "item_ratings", "file": "item_ratings_types.parquet",
                            "rows": len(rows)}

    # invitations: parquet whose text column holds bytes that are not UTF-8
    header, rows = src("invitations")
    cols = {h: pa.array([r[i] for r in rows], pa.string()) for i, h in enumerate(header)}
    cols["customer_id"] = pa.array([SECRET.encode() + b"\xff\xfe"] * len(rows), pa.binary())
    path = put("invitations", "invitations_bytes.parquet", b"")
    pq.write_table(pa.table(cols), path)
    cases["not_utf8_parquet"] = {"entity": "invitations", "file": "invitations_bytes.parquet",
                                 "rows": len(rows)}
    put("orders", "orders.csv", _csv(*src("orders")))
    return cases


def _cli(root: Path, url: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env.update({"CXLOOP_WAREHOUSE_URL": url, "COLUMNS": "250"})
    return subprocess.run([sys.executable, "-m", "flows", *args, "--config",
                           str(root / "cxloop.yml")], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=root)


def _database(pg_server) -> str:
    """A fresh database on the session's server; its URL."""
    name = "fs_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(pg_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin.close()
    return pg_server.url.replace("/cxloop_session?", f"/{name}?")


@pytest.fixture(scope="module")
def suite(tmp_path_factory, pg_server):
    """The cases ingested (stage, GX, load: what a run does before dbt) into one database."""
    from flows import load
    from flows.config import load_settings
    from flows.entities import ENTITIES
    from flows.extract import find_batches
    from flows.validate import GxRunner
    from flows.warehouse import Warehouse, migrate

    root = Path(tmp_path_factory.mktemp("faultsuite"))
    cases = build_landing(root)
    (root / "cxloop.yml").write_text("landing: landing\nhome: home\n")
    url = _database(pg_server)
    wh = Warehouse(url=url, pgdata=pg_server.pgdata)
    conn = wh.connect()
    migrate(conn)
    conn.close()
    settings = load_settings(root / "cxloop.yml")
    load.refresh_reference(wh, settings)
    gx = GxRunner(root / "home", wh.sqlalchemy_url())
    batches = list(find_batches(settings, [D]))
    results = []
    for name in ENTITIES:
        results += load.ingest_entity(wh, gx, name, [b for b in batches if b.entity == name],
                                      "t-suite")
    return root, url, cases, results


def _batches(url: str) -> dict[str, tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("select source_file, status, rows_in, rows_loaded, rows_quarantined, "
                        "error from ops.load_batches")
            return {Path(r[0]).name: r[1:] for r in cur.fetchall()}
    finally:
        conn.close()


def test_each_broken_file_is_rejected_alone_and_says_why_without_content(suite):
    _, url, _, results = suite
    by_file = {Path(r.source_file).name: r for r in results}
    rejected = {n for n, r in by_file.items() if r.status == "rejected"}
    assert rejected == {"customers_b.csv.gz", "responses_tags.parquet",
                        "invitations_bytes.parquet", "responses_zh.csv"}
    assert all(r.status == "loaded" for n, r in by_file.items() if n not in rejected)
    for name, (_, _, _, _, error) in _batches(url).items():
        assert error is None or (name in error and SECRET not in error), error


@pytest.mark.slow
def test_the_run_goes_on_and_exits_4_naming_each_broken_file(tmp_path, pg_server):
    """The whole run through the CLI: every stage runs, exit 4, the rejections listed."""
    build_landing(tmp_path)
    (tmp_path / "cxloop.yml").write_text("landing: landing\nhome: home\n")
    res = _cli(tmp_path, _database(pg_server), "run", "--date", D.isoformat(), "--json")
    assert res.returncode == 4, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    summary = json.loads(res.stdout)
    assert summary["status"] == "completed_with_rejections"
    rejected = {Path(r["file"]).name: r["error"] for r in summary["rejections"]}
    assert set(rejected) == {"customers_b.csv.gz", "responses_tags.parquet",
                             "invitations_bytes.parquet", "responses_zh.csv"}
    assert "dbt build" in summary["stages"] and "tasks" in summary["stages"]
    assert SECRET not in res.stdout + res.stderr


def test_truncated_gzip_is_rejected_with_line_and_rows_counted(suite):
    _, url, _, _ = suite
    b = _batches(url)
    status, rows_in, loaded, quarantined, error = b["customers_b.csv.gz"]
    assert status == "rejected" and rows_in and rows_in > 0
    assert "line " in error and "truncated" in error and "customers_b.csv.gz" in error
    assert b["customers_a.csv"][:2] == ("loaded", 20)  # the same entity's other file loads


def test_list_column_parquet_is_rejected_naming_the_column(suite):
    _, url, cases, _ = suite
    status, rows_in, _, _, error = _batches(url)["responses_tags.parquet"]
    assert status == "rejected" and rows_in == cases["list_column"]["rows"]
    assert "tags (list<" in error and "responses_tags.parquet" in error


def test_wrong_parquet_types_quarantine_the_row_that_does_not_fit(suite):
    _, url, cases, _ = suite
    status, rows_in, loaded, quarantined, _ = _batches(url)["item_ratings_types.parquet"]
    assert (status, rows_in) == ("loaded", cases["wrong_types"]["rows"])
    assert quarantined == 1 and loaded == rows_in - 1
    status, rows_in, _, _, error = _batches(url)["invitations_bytes.parquet"]
    assert status == "rejected" and rows_in == cases["not_utf8_parquet"]["rows"]
    assert "invitations_bytes.parquet: cannot read: Invalid UTF8" in error


def test_a_nul_byte_quarantines_its_row_not_the_file(suite):
    _, url, _, _ = suite
    status, rows_in, loaded, quarantined, error = _batches(url)["interactions.csv"]
    assert (status, rows_in, loaded, quarantined, error) == ("loaded", 4, 3, 1, None)
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("select _row_number, failed_expectations, reasons from "
                    "quarantine.interactions")
        [(row, rules, reasons)] = cur.fetchall()
    conn.close()
    assert row == 2 and "nul_byte" in rules and "channel" in reasons


def test_reconcile_balances_every_row_of_the_day(suite):
    root, url, _, _ = suite
    res = _cli(root, url, "batches", "reconcile", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "balanced: 7 entity-date(s)" in res.stdout
    assert "NOT BALANCED" not in res.stdout


def test_a_fixed_encoding_loads_the_rejected_file_on_retry(suite):
    root, url, cases, _ = suite
    status, rows_in, _, _, error = _batches(url)["responses_zh.csv"]
    assert status == "rejected" and rows_in == cases["wrong_encoding"]["rows"]
    assert "gb18030" in error and "账单" not in error
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("select batch_id from ops.load_batches where source_file like %s",
                    ("%responses_zh.csv",))
        [(batch_id,)] = cur.fetchall()
    conn.close()
    fixed = root / "cxloop.yml"
    fixed.write_text("landing: landing\nhome: home\nsources:\n  crm: {}\n"
                     "  survey:\n    encoding: gb18030\n")
    res = _cli(root, url, "batches", "retry", batch_id, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "retried 1 batch(es): 1 loaded" in res.stdout
    assert _batches(url)["responses_zh.csv"][:3] == ("loaded", rows_in, rows_in)
    res = _cli(root, url, "batches", "reconcile", "--entity", "responses", timeout=120)
    assert res.returncode == 0 and "balanced: 1 entity-date(s)" in res.stdout, res.stdout


def test_reconcile_fails_when_ops_and_raw_disagree_and_retry_reports(suite):
    """A row deleted from raw behind the pipeline's back does not balance (exit 1); a
    retry of the rejected files with nothing fixed leaves them rejected (exit 4)."""
    from flows import batches
    from flows.config import load_settings
    from flows.warehouse import Warehouse

    root, url, _, _ = suite
    wh = Warehouse(url=url)
    waiting = batches.rejected_batch_ids(wh)
    assert len(waiting) == 3  # the encoding case was fixed and loaded above
    results, problems = batches.retry(wh, load_settings(root / "cxloop.yml"), waiting)
    assert not problems and [r.status for r in results] == ["rejected"] * 3
    assert all(r.retried and r.rows_in > 0 for r in results)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("delete from raw.customers where customer_id in "
                    "(select customer_id from raw.customers limit 1)")
        assert cur.rowcount == 1
    conn.close()
    res = _cli(root, url, "batches", "reconcile", "--entity", "customers", timeout=120)
    assert res.returncode == 1
    assert "does not balance" in res.stderr and "raw holds" in res.stderr


# --- only transient errors are retried ---------------------------------------------

def _orders_landing(root: Path) -> Path:
    folder = root / "landing" / "crm" / "orders" / D.isoformat()
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text("order_id,customer_id,order_date,amount\n"
                                       f"o1,c1,{D},19.90\no2,c2,{D},5.00\n")
    return root / "landing"


def test_a_terminated_backend_is_retried_and_the_batch_loads(warehouse, prefect_harness,
                                                             tmp_path):
    """The ingest task's connection is killed (pg_terminate_backend) while it waits for a
    lock; Prefect retries the task once and the second attempt loads the file."""
    import threading
    import time

    from prefect import flow

    from flows import load, pipeline
    from flows.config import load_settings
    from flows.extract import find_batches

    settings = load_settings(None, landing=str(_orders_landing(tmp_path)), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    batches = list(find_batches(settings, [D], ["orders"]))
    blocker = warehouse.connect()
    with blocker.cursor() as cur:
        cur.execute("lock table raw.orders in access exclusive mode")
        cur.execute("select pg_backend_pid()")
        blocker_pid = cur.fetchone()[0]
    killed: list[int] = []

    def kill_the_waiter() -> None:
        watch = warehouse.connect(autocommit=True)
        deadline = time.monotonic() + 120
        with watch.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("select pid from pg_stat_activity where datname = current_database() "
                            "and wait_event_type = 'Lock' and pid <> %s", (blocker_pid,))
                row = cur.fetchone()
                if row:
                    cur.execute("select pg_terminate_backend(%s)", row)
                    killed.append(row[0])
                    break
                time.sleep(0.1)
        watch.close()
        blocker.rollback()  # the lock goes: the retry finds the table free

    @flow(name="retry-probe")
    def probe() -> list:
        return pipeline.ingest_task(warehouse, str(tmp_path), "orders", batches, "t-retry")

    t = threading.Thread(target=kill_the_waiter)
    t.start()
    try:
        [r] = probe()
    finally:
        t.join()
        blocker.close()
    assert len(killed) == 1
    assert (r.status, r.rows_loaded) == ("loaded", 2)


def test_a_statement_timeout_is_not_retried(warehouse, prefect_harness):
    """57014 (query canceled) is an OperationalError that used to be retried: a statement
    timeout fails the same way again, so it is tried once."""
    from prefect import flow, task

    from flows import pipeline

    attempts: list[int] = []

    @task(name="timeout-probe", **pipeline.RETRY)
    def slow() -> None:
        attempts.append(1)
        with warehouse.transaction() as cur:
            cur.execute("set local statement_timeout = '50ms'")
            cur.execute("select pg_sleep(2)")

    @flow(name="no-retry-probe")
    def probe() -> None:
        slow()

    with pytest.raises(psycopg2.errors.QueryCanceled):
        probe()
    assert attempts == [1]


def test_errors_are_classified_on_real_postgres(warehouse):
    """Lock timeout and serialization failure are transient; a wrong database name and a
    division by zero are not; a refused connection is."""
    from flows.errors import WarehouseError
    from flows.transient import is_transient
    from flows.warehouse import Warehouse

    def provoke(*stmts: str) -> BaseException:
        try:
            with warehouse.transaction() as cur:
                for s in stmts:
                    cur.execute(s)
        except Exception as e:  # noqa: BLE001 - the error is what we look at
            return e
        raise AssertionError("no error")

    with warehouse.transaction() as cur:
        cur.execute("create table public.t_probe (k int primary key, v int)")
        cur.execute("insert into public.t_probe values (1, 0)")
    holder = warehouse.connect()
    with holder.cursor() as cur:
        cur.execute("lock table public.t_probe in access exclusive mode")
    lock = provoke("set local lock_timeout = '100ms'", "select * from public.t_probe")
    holder.rollback()
    assert isinstance(lock, psycopg2.errors.LockNotAvailable) and is_transient(lock)

    first = warehouse.connect()
    with first.cursor() as cur:
        cur.execute("set transaction isolation level repeatable read")
        cur.execute("select v from public.t_probe")
    with warehouse.transaction() as cur:  # commits after first's snapshot
        cur.execute("update public.t_probe set v = 1")
    with first.cursor() as cur:
        try:
            cur.execute("update public.t_probe set v = 2")
            raise AssertionError("no serialization failure")
        except psycopg2.errors.SerializationFailure as e:
            assert is_transient(e)
    first.close()

    assert not is_transient(provoke("select 1 / 0"))
    bad_db = Warehouse(url=warehouse.url.replace("/t_", "/nosuch_"))
    with pytest.raises(WarehouseError) as missing:
        bad_db.connect()
    assert not is_transient(missing.value)
    refused = Warehouse(url="postgresql://postgres@127.0.0.1:1/x")
    with pytest.raises(WarehouseError) as down:
        refused.connect()
    assert is_transient(down.value)


# --- killing the main process leaves nothing behind ---------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_kill_9_of_the_main_process_leaves_no_prefect_server_behind(tmp_path, pg_server):
    """Without PREFECT_API_URL a run starts Prefect's temporary server; SIGKILL of the
    run must not leave it listening (nor the watchdog that stops it)."""
    import signal
    import time

    landing = _orders_landing(tmp_path)
    (tmp_path / "cxloop.yml").write_text(f"landing: {landing}\nhome: home\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CXLOOP_", "PREFECT_API_URL"))}
    env["CXLOOP_WAREHOUSE_URL"] = pg_server.url
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    main = subprocess.Popen([sys.executable, "-m", "flows", "run", "--date", D.isoformat(),
                             "--config", str(tmp_path / "cxloop.yml"), "--quiet"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    server = []
    while time.monotonic() < deadline and main.poll() is None:
        kids = _children(main.pid)
        server = [k for k in kids if b"uvicorn" in Path(f"/proc/{k}/cmdline").read_bytes()]
        if server:
            break
        time.sleep(0.2)
    assert server, "the run started no temporary Prefect server"
    time.sleep(1)  # killed while the server is still starting up: the hardest moment
    left = _children(main.pid)
    assert main.poll() is None and server[0] in left
    os.kill(main.pid, signal.SIGKILL)
    main.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in left):
        time.sleep(0.2)
    assert not [p for p in left if _alive(p)], "processes left behind after kill -9"
