"""The warehouse's tables as DDL: raw, quarantine, ops and the Python stages' outputs.

Only statements and the shapes they share (schemas, lineage columns), no
execution: ``migrations.migrate`` runs them, and readers such as the load stage
use ``LINEAGE_COLUMNS`` to build the tables a batch is copied into. Every
statement is idempotent (``if not exists``), so running them all on each start
brings any warehouse up to date.
"""

from __future__ import annotations

from psycopg2 import sql

from flows.entities import Entity

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


def raw_table_ddl(e: Entity) -> sql.Composed:
    """``raw.<entity>``: list-partitioned by batch, so loading a batch is attaching the
    table it was COPYed into, not writing its rows a second time."""
    cols = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
            for c in e.raw_columns]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in LINEAGE_COLUMNS]
    return sql.SQL("create table if not exists raw.{} ({}) partition by list (_batch_id)").format(
        sql.Identifier(e.name), sql.SQL(", ").join(cols)
    )



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
    # the hourly run's look-up of breaches already told (flows/alerts.py notify_escalations)
    "create index if not exists notifications_key on ops.notifications (message_key)",
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

# --- helper "py" (issue 16): indexes the per-date upkeep of a backfill's tasks reads, so
# each date touches the tasks still in play rather than scanning every task ever made.
# Partial indexes: their predicates are the statements' own conditions (flows/actions).
OPS_DDL += [
    "create index if not exists improvement_tasks_active_rule on ops.improvement_tasks (rule) "
    "where condition_active",
    "create index if not exists improvement_tasks_escalation_due on ops.improvement_tasks "
    "(due_at) where escalated_due_at is distinct from due_at "
    "and status in ('open', 'in_progress')",
    # people's edits (flows/actions/upkeep.py notice_people_edits): the rows people changed
    # since the pipeline last saw them, not a scan of every task on each (hourly) run
    "create index if not exists improvement_tasks_unseen on ops.improvement_tasks (task_id) "
    "where seen_status is null",
    "create index if not exists improvement_tasks_edited on ops.improvement_tasks (task_id) "
    "where status is distinct from seen_status or assignee is distinct from seen_assignee",
    # the tasks a run opened (the alerts run's immediate messages)
    "create index if not exists improvement_tasks_created_run on ops.improvement_tasks "
    "(created_run_id)",
]
