"""``open_warehouse``: the one way commands get a ready warehouse.

Chooses between an external server (by URL) and the embedded one, sets the
session zone, and migrates; kept apart from ``embedded`` so that module stays
about the embedded server alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flows.warehouse.connection import Warehouse
from flows.warehouse.embedded import _start_embedded
from flows.warehouse.migrations import migrate


def open_warehouse(home: Path, url: str | None = None, database: str = "cxloop",
                   migrate_schema: bool = True, timezone: str | None = None) -> Warehouse:
    """The configured warehouse, started if embedded, migrated if asked; its sessions run
    in ``timezone`` (the configured one) when given."""
    wh = Warehouse(url=url) if url else _start_embedded(Path(home), database)
    wh = dataclasses.replace(wh, timezone=timezone)
    if migrate_schema:
        conn = wh.connect()
        try:
            migrate(conn)
        finally:
            conn.close()
    return wh
