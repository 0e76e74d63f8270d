"""Bringing a warehouse up to date: ``migrate`` and the one-off conversions it needs.

Runs on every connect (idempotent), so a fresh folder, an old folder and an
external database end up with the same schemas: raw tables from before
partitioning become partitioned, timestamps from before time zones become
``timestamptz``, and the database's default zone follows the configured one.
"""

from __future__ import annotations

import logging

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from flows.entities import ENTITIES, Entity
from flows.warehouse.ddl import (
    OPS_DDL,
    PYTHON_OUTPUT_DDL,
    SCHEMAS,
    quarantine_table_ddl,
    raw_table_ddl,
)
from flows.warehouse.lock import RUN_LOCK_KEY

log = logging.getLogger(__name__)


def _partition_legacy_raw(cur: psycopg2.extensions.cursor, e: Entity) -> None:
    """Bring a raw table from before partitioning (one plain table) under a partitioned
    one: the old table becomes a single partition holding all its batches."""
    cur.execute("select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'raw' and c.relname = %s", (e.name,))
    row = cur.fetchone()
    if row is None or row[0] == "p":
        return
    legacy = f"{e.name}__before_partitioning"
    log.info("migrating raw.%s to a table partitioned by batch", e.name)
    cur.execute(sql.SQL("alter table raw.{} rename to {}").format(
        sql.Identifier(e.name), sql.Identifier(legacy)))
    cur.execute(sql.SQL("alter table raw.{} set schema raw_batches").format(
        sql.Identifier(legacy)))
    cur.execute(raw_table_ddl(e))
    # Also batches whose rows were all quarantined: a replay may move rows into them.
    cur.execute(sql.SQL("select distinct _batch_id from raw_batches.{}").format(
        sql.Identifier(legacy)))
    batch_ids = {r[0] for r in cur.fetchall()}
    cur.execute("select to_regclass('ops.load_batches') is not null")
    if cur.fetchone()[0] and batch_ids:
        cur.execute("select batch_id from ops.load_batches where entity = %s "
                    "and status <> 'rejected'", (e.name,))
        batch_ids |= {r[0] for r in cur.fetchall()}
    batch_ids = sorted(batch_ids)
    if not batch_ids:
        cur.execute(sql.SQL("drop table raw_batches.{}").format(sql.Identifier(legacy)))
        return
    for c in e.raw_columns:  # a partition has every column of its parent
        cur.execute(sql.SQL("alter table raw_batches.{} add column if not exists {} {}").format(
            sql.Identifier(legacy), sql.Identifier(c.name), sql.SQL(c.pg_type)))
    cur.execute(sql.SQL("alter table raw.{} attach partition raw_batches.{} for values in ({})")
                .format(sql.Identifier(e.name), sql.Identifier(legacy),
                        sql.SQL(", ").join(map(sql.Literal, batch_ids))))


def _timestamps_to_timestamptz(cur: psycopg2.extensions.cursor, e: Entity) -> None:
    """Raw timestamps from before time zones (``timestamp without time zone``) become
    instants, read in the session's zone (the configured ``timezone``). Idempotent: a
    column already ``timestamptz`` is left alone. On the partitioned table the change
    reaches every partition; the views reading the table (dbt's staging, rebuilt by the
    next ``dbt build``) are dropped first, as Postgres cannot retype a column they use.
    Tables of replaced deliveries (``raw_superseded``) follow, so a reinstated one can
    become a partition again."""
    wanted = [c.name for c in e.raw_columns if c.pg_type == "timestamptz"]
    cur.execute("select table_schema, table_name, array_agg(column_name::text order by "
                "column_name) from information_schema.columns "
                "where data_type = 'timestamp without time zone' and column_name = any(%s) "
                "and ((table_schema = 'raw' and table_name = %s) or (table_schema = "
                "'raw_superseded' and left(table_name, length(%s) + 2) = %s || '__')) "
                "group by 1, 2 order by 1, 2", (wanted, e.name, e.name, e.name))
    todo = cur.fetchall()
    for schema, table, old in todo:
        log.info("%s.%s: %s become timestamptz", schema, table, ", ".join(old))
        ref = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        cur.execute("select distinct v.oid::regclass::text from pg_depend d "
                    "join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class "
                    "where d.refobjid = %s::regclass and v.oid <> d.refobjid",
                    (ref.as_string(cur.connection),))
        for (view,) in cur.fetchall():  # names from the catalogue, already quoted by regclass
            cur.execute(sql.SQL("drop view if exists {} cascade").format(sql.SQL(view)))
        cur.execute(sql.SQL("alter table {} {}").format(ref, sql.SQL(", ").join(
            sql.SQL("alter column {c} type timestamptz using {c} at time zone "
                    "current_setting('TimeZone')").format(c=sql.Identifier(c)) for c in old)))


def set_default_zone(cur: psycopg2.extensions.cursor, zone: str) -> None:
    """Make ``zone`` the database's default session zone, so that a psql or BI session
    reads staging's wall-clock times and day boundaries as the pipeline does (its own
    sessions set the zone explicitly). Without the right to (not the database's owner),
    a warning: the pipeline is unaffected."""
    cur.execute("select current_database(), coalesce((select s.setting from "
                "pg_db_role_setting r, unnest(r.setconfig) s(setting) join pg_database d "
                "on d.datname = current_database() where r.setdatabase = d.oid "
                "and r.setrole = 0 and s.setting like 'TimeZone=%%'), '')")
    database, current = cur.fetchone()
    if current == f"TimeZone={zone}":
        return
    cur.execute("savepoint default_zone")
    try:
        cur.execute(sql.SQL("alter database {} set timezone = {}").format(
            sql.Identifier(database), sql.Literal(zone)))
    except psycopg2.errors.InsufficientPrivilege:
        cur.execute("rollback to savepoint default_zone")
        log.warning("cannot set the default time zone of database %s to %s (not its owner); "
                    "other sessions read staging in the server's zone", database, zone)
    cur.execute("release savepoint default_zone")



def migrate(conn: psycopg2.extensions.connection) -> None:
    """Create or bring up to date every schema, table and role cxloop uses. Idempotent."""
    with conn, conn.cursor() as cur:
        # Serialise concurrent migrations (two commands starting at once).
        cur.execute("select pg_advisory_xact_lock(%s)", (RUN_LOCK_KEY + 1,))
        for schema in SCHEMAS:
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for e in ENTITIES.values():
            _partition_legacy_raw(cur, e)
            cur.execute(raw_table_ddl(e))
            # Columns added to the contract later (``attributes`` too) arrive on old
            # warehouses: on a partitioned table the column reaches every partition.
            for c in e.raw_columns:
                cur.execute(
                    sql.SQL("alter table raw.{} add column if not exists {} {}").format(
                        sql.Identifier(e.name), sql.Identifier(c.name), sql.SQL(c.pg_type)
                    )
                )
            _timestamps_to_timestamptz(cur, e)
            # No index on raw: every index costs ~40 % of load time and nothing looks rows up
            # by batch (staging scans whole tables; quarantine replay reads quarantine).
            cur.execute(sql.SQL("drop index if exists raw.{}").format(
                sql.Identifier(f"{e.name}_batch")))
            cur.execute(quarantine_table_ddl(e))
        for stmt in OPS_DDL + PYTHON_OUTPUT_DDL:
            cur.execute(stmt)
        from flows.corrections import set_aside_superseded  # helper "corrections"

        set_aside_superseded(cur)  # superseded before corrections took rows out of raw
        cur.execute(
            """do $$ begin
                 if not exists (select 1 from pg_roles where rolname = 'bi_reader') then
                   create role bi_reader nologin;
                 end if;
               end $$"""
        )
        # bi_reader sees marts only; everything else is refused.
        cur.execute("revoke all on schema raw, raw_batches, raw_superseded, quarantine, ops, "
                    "staging, intermediate from bi_reader")
        cur.execute("grant usage on schema marts to bi_reader")
        cur.execute("grant select on all tables in schema marts to bi_reader")
        cur.execute("alter default privileges in schema marts grant select on tables to bi_reader")
