"""Operations: two runs never interleave; the second names the run holding the lock."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from flows import report
from flows.errors import LockTimeoutError
from flows.warehouse import run_lock

pytestmark = pytest.mark.integration


def test_second_run_waits_then_names_the_holder(warehouse):
    holder = report.RunSummary("nightly-20260801-aaaa", "nightly", date(2026, 8, 1),
                               date(2026, 8, 1))
    report.start_run(warehouse, holder)
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with run_lock(warehouse, 5, holder.run_id):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    t0 = time.monotonic()
    with pytest.raises(LockTimeoutError) as e:
        with run_lock(warehouse, 1.0, "second"):
            pass
    waited = time.monotonic() - t0
    release.set()
    t.join()
    assert 0.9 <= waited < 5
    assert "nightly-20260801-aaaa" in str(e.value)


def test_lock_is_free_again_after_the_holder_exits(warehouse):
    order: list[str] = []

    def run(name: str, hold: float) -> None:
        with run_lock(warehouse, 10, name):
            order.append(f"{name} in")
            time.sleep(hold)
            order.append(f"{name} out")

    a = threading.Thread(target=run, args=("a", 0.5))
    a.start()
    time.sleep(0.1)
    b = threading.Thread(target=run, args=("b", 0))
    b.start()
    a.join()
    b.join()
    assert order == ["a in", "a out", "b in", "b out"]


def test_bi_reader_over_tcp_reads_marts_only_with_its_password(tmp_path):
    import psycopg2

    from flows.warehouse import open_warehouse, serve_embedded_tcp, stop_embedded

    home = tmp_path / "h"
    wh = open_warehouse(home)
    with wh.transaction() as cur:
        cur.execute("create table marts.bi_probe as select 1 as x")
        cur.execute("create table raw.secret_probe as select 1 as x")
    port = 55000 + (hash(str(tmp_path)) % 900)
    try:
        url = serve_embedded_tcp(home, "127.0.0.1", port, "s3cret-pw")
        conn = psycopg2.connect(url, password="s3cret-pw")
        with conn.cursor() as cur:
            cur.execute("select x from marts.bi_probe")
            assert cur.fetchone() == (1,)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("select x from raw.secret_probe")
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(url, password="wrong")
        # Local tools keep working through the socket.
        with open_warehouse(home).transaction() as cur:
            cur.execute("select count(*) from raw.secret_probe")
            assert cur.fetchone() == (1,)
    finally:
        stop_embedded(home)


def test_highlights_on_a_warehouse_without_marts_are_empty_not_errors(warehouse):
    hl = report.highlights(warehouse)
    assert hl == {"worst_touchpoints": [], "at_risk": [], "tasks_by_owner": []}


def test_warehouse_serve_waits_for_a_running_pipeline_and_survives_a_restart(tmp_path):
    """`warehouse serve` restarts the server: never under a running pipeline (it waits for
    the run lock, then names the holder), and the TCP listener comes back after a stop."""
    import psycopg2

    from flows.errors import LockTimeoutError
    from flows.warehouse import open_warehouse, run_lock, serve_embedded_tcp, stop_embedded

    home = tmp_path / "h"
    wh = open_warehouse(home)
    with wh.transaction() as cur:
        cur.execute("insert into ops.pipeline_runs (run_id, flow, start_date, end_date, status, "
                    "started_at) values ('nightly-busy', 'nightly', current_date, current_date, "
                    "'running', now())")
        cur.execute("create table marts.bi_probe as select 1 as x")
    port = 56000 + (hash(str(tmp_path)) % 900)
    try:
        with run_lock(wh, 0, "nightly-busy"):
            worker = wh.connect()  # the "pipeline": a session that must not be cut off
            with pytest.raises(LockTimeoutError, match="nightly-busy"):
                serve_embedded_tcp(home, "127.0.0.1", port, "pw-1", lock_timeout_seconds=0.5)
            with worker.cursor() as cur:
                cur.execute("select 1")  # still connected: no restart happened
                assert cur.fetchone() == (1,)
            worker.close()
        url = serve_embedded_tcp(home, "127.0.0.1", port, "pw-1", lock_timeout_seconds=5)
        psycopg2.connect(url, password="pw-1").close()
        stop_embedded(home)
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(url, password="pw-1", connect_timeout=2)
        # Any later cxloop command (a new process, as after a reboot) starts it again.
        import os
        import subprocess
        import sys

        env = {**os.environ, "CXLOOP_HOME": str(home)}
        env.pop("CXLOOP_WAREHOUSE_URL", None)
        subprocess.run([sys.executable, "-m", "flows", "warehouse", "url"], env=env,
                       check=True, capture_output=True, timeout=120)
        conn = psycopg2.connect(url, password="pw-1")
        with conn.cursor() as cur:
            cur.execute("select x from marts.bi_probe")
            assert cur.fetchone() == (1,)
        conn.close()
    finally:
        stop_embedded(home)


def test_the_embedded_server_runs_with_the_warehouse_tuning_and_alter_system_wins(tmp_path):
    """A new embedded server starts with cxloop's settings (WAL skipped for bulk writes,
    checkpoints spaced, buffers sized to the machine), not PostgreSQL's defaults; a
    setting the user made with ALTER SYSTEM survives the next start."""
    from flows.warehouse import open_warehouse, stop_embedded
    from flows.warehouse.embedded import server_tuning

    home = tmp_path / "h"

    def settings() -> dict[str, str]:
        with open_warehouse(home).transaction() as cur:
            cur.execute("select name, current_setting(name) from pg_settings where name in "
                        "('wal_level', 'max_wal_size', 'checkpoint_timeout', 'shared_buffers')")
            return dict(cur.fetchall())

    import os

    # a restrictive umask (as on hardened hosts) must not leave the file unreadable to
    # the server, which runs as another user under root
    umask = os.umask(0o077)
    try:
        try:
            first = settings()
        finally:
            os.umask(umask)
        assert first["wal_level"] == "minimal"
        assert first["max_wal_size"] == "8GB" and first["checkpoint_timeout"] == "15min"
        shared_mb = int(server_tuning()["shared_buffers"].removesuffix("MB"))
        assert first["shared_buffers"] in (f"{shared_mb}MB", f"{shared_mb / 1024:g}GB")
        assert server_tuning(64 * 1024**3)["shared_buffers"] == "4096MB"  # capped
        assert server_tuning(512 * 1024**2)["shared_buffers"] == "128MB"  # floor
        assert server_tuning(64 * 1024**3)["work_mem"] == "128MB"
        conn = open_warehouse(home).connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("alter system set max_wal_size = '2GB'")
        conn.close()
        stop_embedded(home)
        again = settings()
        assert again["max_wal_size"] == "2GB"
        assert again["wal_level"] == "minimal"
    finally:
        stop_embedded(home)
