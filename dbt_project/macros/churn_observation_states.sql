{#
    The churn observations kept between nights (int_churn_observation_states).

    A state row holds what a customer's observation row is made of that does not move
    with the calendar by itself: counts and sums of their events up to the date, the
    latest dates, the subscription running then. int_churn_observations turns the states
    into the model's rows: the date arithmetic (tenure, days since the last answer, rates
    per observed day) and everyone's means the shrunk features are measured against
    (int_churn_observation_priors) are applied there, every night, to every row.

    Earlier observation dates lie every churn_observation_every_days observed days from
    the first loaded extract (data_start_date - 1 + k x every_days): a date stays a date
    from night to night, so its rows are kept. The run date's rows (is_current, no
    observation_date in the state) are kept too, for every customer whose state cannot
    have changed since the last build (of run_date P):

      * customers whose rows of the inputs changed (the staging models' log of touched
        customers, and the rows of incremental inputs rewritten since: a response moved
        to another customer's invitation rewrites that invitation's row only),
      * customers with an event that entered or left a window between P and run_date
        (contacts and ratings leaving the feature window, relationship answers leaving
        the 180 days of the trend, invitations getting old enough to count), or a
        subscription, customer version or churn date starting or ending in between.

    Those have their run-date row recomputed; their rows of earlier dates are recomputed
    only when their inputs changed. An earlier date whose history sample changed (its
    count of running subscriptions moved, e.g. an old extract re-delivered) or that is new
    in the grid is computed for all its sampled customers. Everything else is rebuilt in
    full on the rules of macros/incremental_by_customer.sql, and when the first loaded
    extract moved.
#}

{#- The observation dates up to run_date: the run date itself and every earlier date
    every `every_days` observed days from the first loaded extract, from `bounds`
    (data_start_date, run_date). -#}
{% macro churn_observation_dates(bounds='bounds') -%}
    select
        {{ bounds }}.data_start_date,
        {{ bounds }}.run_date as observation_date
    from {{ bounds }}
    where {{ bounds }}.run_date > {{ bounds }}.data_start_date

    union all

    select
        {{ bounds }}.data_start_date,
        cast(series.observation_date as date) as observation_date
    from {{ bounds }}
    cross join lateral generate_series(
        cast({{ bounds }}.data_start_date - 1 + {{ var('churn_observation_every_days') }} as timestamp),
        cast({{ bounds }}.run_date - 1 as timestamp),
        interval '{{ var('churn_observation_every_days') }} days'
    ) as series (observation_date)
{%- endmacro %}

{#- Per earlier observation date, the hash buckets (of 1024) of the customers sampled:
    each date keeps about churn_history_max_rows x every_days / 365 rows (a year of dates
    about churn_history_max_rows; the churn stage samples again when it reads more), set
    from that date's running subscriptions alone, so a date's sample does not move when
    later dates are added. `known_on_date`: the subscriptions running on each date. -#}
{% macro churn_history_buckets(known_on_date='known_on_date') -%}
    {%- set per_date = (var('churn_history_max_rows') * var('churn_observation_every_days') / 365.0)
                       | round(0, 'ceil') | int -%}
    select
        {{ known_on_date }}.observation_date,
        cast(least(1024, ceil(1024.0 * {{ per_date }} / count(*))) as integer) as buckets
    from {{ known_on_date }}
    where {{ known_on_date }}.observation_date < {{ run_date() }}
    group by {{ known_on_date }}.observation_date
{%- endmacro %}

{#- True when this build of the states can be incremental: the rules of a model kept by
    customer, and the same first loaded extract as the kept rows'. -#}
{% macro churn_states_can_increment() -%}
    {#- a unit test has no relation (`this`) to keep rows in -#}
    {%- if this is none or not customer_can_increment() -%}{{ return(false) }}{%- endif -%}
    {%- set rows = run_query(
        "select (select data_start_date from " ~ this ~ " limit 1) = "
        ~ "(select min(extract_date) from " ~ ref('stg_crm__subscriptions') ~ ")") -%}
    {{ return(rows | length > 0 and rows[0][0] == true) }}
{%- endmacro %}

{#- In the post-hook: whether the pre-hook took the incremental path (its temporary table
    is there, in this transaction). Asking churn_states_can_increment again would compare
    the first extract with the rows just written. -#}
{% macro churn_states_were_incremental() -%}
    {%- if not execute or this is none or not is_incremental() -%}{{ return(false) }}{%- endif -%}
    {%- set rows = run_query("select to_regclass('pg_temp." ~ churn_states_temp('moved_customers')
                             ~ "') is not null") -%}
    {{ return(rows | length > 0 and rows[0][0] == true) }}
{%- endmacro %}

{% macro churn_states_temp(name) -%}
    "{{ this.identifier }}__{{ name }}"
{%- endmacro %}

{#- The incremental event inputs, whose rows carry built_at: the customers of their rows
    rewritten since are touched (kept_rewritten_customers). -#}
{% macro churn_states_rewritten_inputs() -%}
    {{ return([ref('int_interactions_enriched'), ref('int_invitations_enriched'),
               ref('int_responses_enriched'), ref('stg_survey__item_ratings')]) }}
{%- endmacro %}

{#- Pre-hook: the customers and dates to recompute, and their rows gone; a full build
    over an existing table empties it. -#}
{% macro churn_states_forget() -%}
    {%- if is_incremental() -%}
        {%- if churn_states_can_increment() -%}
            {%- set window_days = var('churn_feature_window_days') -%}
    {{ customer_touched_ddl(kept_rewritten_customers(churn_states_rewritten_inputs())) }};
    -- the run date's rows to recompute: the touched customers, and those with an event
    -- entering or leaving a window since the last build's run date
    {%- set interactions_crossing -%}
    select interactions.customer_id from {{ ref('int_interactions_enriched') }} as interactions, days
    where
        interactions.occurred_on > days.since_date - {{ window_days }}
        and interactions.occurred_on <= days.run_date - {{ window_days }}
        or interactions.occurred_on > days.since_date and interactions.occurred_on <= days.run_date
    {%- endset %}
    {%- set ratings_crossing -%}
    select ratings.customer_id from {{ ref('stg_survey__item_ratings') }} as ratings, days
    where
        ratings.responded_at >= cast(days.since_date - {{ window_days }} + 1 as timestamp)
        and ratings.responded_at < cast(days.run_date - {{ window_days }} + 1 as timestamp)
        or ratings.responded_at >= cast(days.since_date + 1 as timestamp)
        and ratings.responded_at < cast(days.run_date + 1 as timestamp)
    {%- endset %}
    {%- set versions_crossing -%}
    select versions.customer_id from {{ ref('int_subscription_versions') }} as versions, days
    where
        {%- for column in ['start_date', 'end_date', 'known_from', 'known_until'] %}
        versions.{{ column }} > days.since_date - {{ window_days }}
        and versions.{{ column }} <= days.run_date - {{ window_days }}
        or versions.{{ column }} > days.since_date and versions.{{ column }} <= days.run_date
        or
        {%- endfor %}
        false
    {%- endset %}
    {%- set history_crossing -%}
    select history.customer_id from {{ ref('int_customers_historized') }} as history, days
    where
        history.valid_from >= cast(days.since_date as timestamp)
        and history.valid_from <= cast(days.run_date + 1 as timestamp)
        or history.valid_to >= cast(days.since_date as timestamp)
        and history.valid_to <= cast(days.run_date + 1 as timestamp)
    {%- endset %}
    {{ kept_moved_customers_ddl([
        interactions_crossing,
        kept_responses_crossing([window_days, 180, 0]),
        ratings_crossing,
        kept_invitations_crossing(),
        versions_crossing,
        kept_churn_crossing(),
        history_crossing,
    ]) }};
    -- the earlier dates' samples as of now; a date whose kept rows were sampled
    -- otherwise, or that left the grid, is recomputed whole
    create temporary table {{ churn_states_temp('history_buckets') }} on commit drop as
    with
    bounds as (
        select
            min(extract_date) as data_start_date,
            {{ run_date() }} as run_date
        from {{ ref('stg_crm__subscriptions') }}
    ),
    observation_dates as ({{ churn_observation_dates() }}),
    known_on_date as ({{ churn_known_on_date() }})
    {{ churn_history_buckets() }};
    delete from {{ this }} as kept
    where
        kept.is_current and kept.customer_id in (
            select moved.customer_id from {{ churn_states_temp('moved_customers') }} as moved
        )
        or not kept.is_current and (
            kept.customer_id in (
                select touched.customer_id from {{ customer_touched_relation() }} as touched
            )
            or not exists (
                select 1 from {{ churn_states_temp('history_buckets') }} as now_sampled
                where
                    now_sampled.observation_date = kept.observation_date
                    and now_sampled.buckets = kept.sample_buckets
            )
        )
        {%- else %}
    truncate {{ this }}
        {%- endif -%}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#- The subscriptions running on each observation date as the warehouse knew them then
    (never a version extracted later), from `observation_dates`. -#}
{% macro churn_known_on_date(observation_dates='observation_dates') -%}
    select
        {{ observation_dates }}.observation_date,
        {{ observation_dates }}.data_start_date,
        subscription_versions.*
    from {{ observation_dates }}
    inner join {{ ref('int_subscription_versions') }} as subscription_versions
        on
            {{ observation_dates }}.observation_date >= subscription_versions.known_from
            and {{ observation_dates }}.observation_date
            < coalesce(subscription_versions.known_until, date '9999-12-31')
    where
        {{ observation_dates }}.observation_date >= subscription_versions.start_date
        and coalesce(subscription_versions.end_date, date '9999-12-31')
        > {{ observation_dates }}.observation_date
{%- endmacro %}

{#- Post-hook: the watermark, the indexes (customer, date, built_at), statistics after a
    full build, the touched-customer log pruned. -#}
{% macro record_churn_states_build() -%}
    {{ kept_record_build(['customer_id', 'observation_date'], not churn_states_were_incremental(),
                         'ops.dbt_touched_customers', 'customer_id') }}
{%- endmacro %}

{#- The config of int_churn_observation_states: config(**churn_states_incremental()). The
    first extract date (min) and the events entering or leaving a window since the last
    build are read through indexes the pre-hooks make once (each a range of a few days of
    a table of millions of rows). -#}
{% macro churn_states_incremental() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'sync_all_columns',
        'indexes': [{'columns': ['customer_id']}, {'columns': ['observation_date']}],
        'meta': {'incremental_by': 'customer_id'},
        'pre_hook': [
            "{{ ensure_indexes(['extract_date'], ref('stg_crm__subscriptions')) }}",
            "{{ ensure_indexes(['occurred_on'], ref('int_interactions_enriched')) }}",
            "{{ ensure_indexes(['response_date'], ref('int_responses_enriched')) }}",
            "{{ ensure_indexes(['responded_at'], ref('stg_survey__item_ratings')) }}",
            "{{ ensure_indexes(['sent_on', 'answered_at'], ref('int_invitations_enriched')) }}",
            "{{ churn_states_forget() }}",
        ],
        'post_hook': ["{{ record_churn_states_build() }}"],
    }) }}
{%- endmacro %}
