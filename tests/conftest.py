"""Shared fixtures: one embedded PostgreSQL per test session, real dbt, real GX."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# rich reads COLUMNS once, when flows.cli creates its consoles at import: set it before any
# test module imports the CLI, so tables are not cut at 80 columns whatever the test order.
os.environ["COLUMNS"] = "200"


@pytest.fixture(scope="session")
def session_home() -> Path:
    # Short path: Unix socket paths are limited to ~107 bytes.
    home = Path(tempfile.mkdtemp(prefix="cxt-", dir="/tmp"))
    yield home
    from flows.warehouse import stop_embedded

    stop_embedded(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(session_home: Path):
    """The embedded server, started once; tests get their own database from it."""
    from flows.warehouse import open_warehouse

    return open_warehouse(session_home, database="cxloop_session")


@pytest.fixture()
def warehouse(pg_server, session_home: Path):
    """A fresh, migrated database on the session server."""
    import psycopg2
    from psycopg2 import sql

    from flows.warehouse import Warehouse, migrate

    name = "t_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(pg_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin.close()
    url = pg_server.url.replace("/cxloop_session?", f"/{name}?")
    wh = Warehouse(url=url, pgdata=pg_server.pgdata)
    conn = wh.connect()
    migrate(conn)
    conn.close()
    yield wh


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def prefect_server(request, tmp_path_factory):
    """One Prefect API server for the whole session, shared by every CLI subprocess.

    Without it each ``python -m flows run|backfill`` starts Prefect's temporary server
    (7-14 s on this machine). Started only when the session has tests that run flows.
    """
    wanted = any(item.get_closest_marker(m) for item in request.session.items
                 for m in ("integration", "e2e"))
    if not wanted or os.environ.get("PREFECT_API_URL"):
        yield None
        return
    import subprocess
    import sys
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                             "127.0.0.1", "--port", str(port), "--no-services", "--no-ui"],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError("Prefect server did not start:\n"
                               + (home / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    os.environ["PREFECT_API_URL"] = url  # for subprocesses (python -m flows ...)
    # In this process Prefect froze its settings when first imported (collection may have
    # imported it already): without this, in-process flows would start a temporary server
    # of their own (slow, and on a busy machine it times out).
    from prefect.settings import PREFECT_API_URL, temporary_settings

    pinned = temporary_settings(updates={PREFECT_API_URL: url})
    pinned.__enter__()
    try:
        yield url
    finally:
        pinned.__exit__(None, None, None)
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server):
    """Flows run in-process against the session's Prefect server; Prefect's own test
    harness (a second temporary server, ~11 s) only when there is none."""
    if prefect_server:
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
