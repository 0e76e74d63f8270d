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


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness costs ~11 s to enter: once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
