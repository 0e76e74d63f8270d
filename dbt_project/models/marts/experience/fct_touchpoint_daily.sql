{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['date_day', 'touchpoint_code', 'channel', 'segment'],
        on_schema_change='append_new_columns',
        pre_hook=[
            "{{ ensure_indexes(['occurred_on'], ref('int_interactions_enriched')) }}",
            "{{ ensure_indexes(['sent_on'], ref('int_invitations_enriched')) }}",
            "{{ ensure_indexes(['response_date'], ref('int_responses_enriched')) }}",
            "{{ ensure_indexes(['rating_date'], ref('int_item_ratings_enriched')) }}",
        ],
        post_hook=[
            "delete from {{ this }} where n_interactions = 0 and n_invitations = 0 "
            ~ "and n_responses = 0 and item_rating_n = 0",
        ],
    )
}}
-- Day x touchpoint x channel x segment: volumes, survey scores, relationship-
-- survey item ratings and the touchpoint's operational KPI. Additive parts
-- (sums and counts) are kept so periods can be re-aggregated.
-- Dates: interactions by occurred_at, invitations by sent_at (answered =
-- answered when the day was last rebuilt), scores and item ratings by
-- responded_at (item ratings on the touchpoint's default channel).
-- Incremental: a run rebuilds every day from the earliest of
--   * `lookback_days` before the older of run_date and the latest day built,
--   * the earliest event day among the rows its inputs wrote since its last build
--     (they are kept incrementally and stamp each row they write with built_at):
--     new, late-arriving and re-delivered rows, an invitation answered since, and
--     every row after an input's full build (a backfill for an earlier run_date
--     rewinds them, a changed model rebuilds them),
--   * the earliest date a correction committed since the last build touched
--     (ops.batch_changes: a row a correction removed leaves no newer row behind),
-- (the pre-hooks index the inputs' event days, which the rebuild reads from; their
-- built_at indexes come with their own builds)
-- and re-emits the cells of those days (up to run_date) that no longer have
-- any event as zeros, so delete+insert on the grain leaves nothing stale; a
-- post-hook then drops those empty cells, which a full build never has.
-- Days after run_date (built by a later run, seen during a backfill) are left
-- alone; readers filter date_day <= run_date.
{% if is_incremental() -%}
{#- a table built before as_of_date (or the item ratings) existed counts as built as of
    nothing: every day is rebuilt, so no day keeps null item-rating counts -#}
{%- set built_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
{%- set up_to_date = 'as_of_date' in built_columns and 'item_rating_n' in built_columns -%}
{#- The first day to rebuild, found before the build and written into its filters as a
    literal: compared with a subquery's value, the planner guessed a third of each input
    and read all of it instead of the days through their index. -#}
{%- set window_query -%}
with

last_build as (

    select
        max(date_day) as last_day,
        max(built_at) as last_built_at
    from {{ this }}

),

-- the event days of the rows the inputs (models kept by customer or by key,
-- macros/incremental_by_*.sql) wrote since this table's last build: new, late and
-- re-delivered rows, an invitation answered since, and every row after an input's full
-- build (a run for an earlier date, a changed model), read through each input's
-- built_at index. Materialized: asked for min(day) directly, the planner walks the day
-- index and filters on built_at, reading all 10M interactions to find none (88 s).
rewritten_days as materialized (

    select late.occurred_on as event_day
    from {{ ref('int_interactions_enriched') }} as late
    where late.built_at > (select last_build.last_built_at from last_build)

    union all

    select late.sent_on as event_day
    from {{ ref('int_invitations_enriched') }} as late
    where late.built_at > (select last_build.last_built_at from last_build)

    union all

    select least(late.response_date, cast(late.invited_at as date)) as event_day
    from {{ ref('int_responses_enriched') }} as late
    where late.built_at > (select last_build.last_built_at from last_build)

    union all

    select late.rating_date as event_day
    from {{ ref('int_item_ratings_enriched') }} as late
    where late.built_at > (select last_build.last_built_at from last_build)

),

rebuild_window as (

    select
        coalesce(
            least(
                least(last_build.last_day, {{ run_date() }}) - {{ var('lookback_days') }},
                (select min(rewritten_days.event_day) from rewritten_days),
                -- a row a correction removed leaves no rewritten row behind
                (
                    select min(changes.first_affected_date)
                    from {{ source('ingestion', 'batch_changes') }} as changes
                    where changes.at > last_build.last_built_at
                )
            ),
            date '1900-01-01'
        ) as first_day
    from last_build

)

select cast(first_day as text) from rebuild_window
{%- endset -%}
{%- set first_day = "date '" ~ (run_query(window_query).columns[0].values()[0]
                                  if execute and up_to_date else '1900-01-01') ~ "'" -%}
{%- else -%}
{%- set first_day = "date '1900-01-01'" -%}
{%- endif %}
with

{% if is_incremental() -%}
previous_cells as (

    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from {{ this }}
    where
        date_day >= {{ first_day }}
        and date_day <= {{ run_date() }}

),

{% endif -%}
interactions as (

    select * from {{ ref('int_interactions_enriched') }}
    where occurred_on >= {{ first_day }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}
    where
        sent_on >= {{ first_day }}
        and touchpoint_code is not null

),

responses as (

    select * from {{ ref('int_responses_enriched') }}
    where
        response_date >= {{ first_day }}
        and touchpoint_code is not null

),

item_ratings as (

    select * from {{ ref('int_item_ratings_enriched') }}
    where rating_date >= {{ first_day }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

interactions_daily as (

    select
        occurred_on as date_day,
        touchpoint_code,
        channel,
        segment,
        count(*) as n_interactions,
        count(*) filter (where is_repeat_contact) as n_repeat_contacts,
        count(kpi_value) as kpi_n,
        sum(kpi_value) as kpi_sum,
        avg(wait_seconds) as avg_wait_seconds,
        avg(handle_seconds) as avg_handle_seconds,
        avg(cast(is_first_contact_resolution as integer)) as fcr_rate,
        avg(cast(is_resolved as integer)) as resolution_rate
    from interactions
    group by date_day, touchpoint_code, channel, segment

),

invitations_daily as (

    select
        sent_on as date_day,
        touchpoint_code,
        channel,
        segment,
        count(*) as n_invitations,
        count(*) filter (where is_answered) as n_invitations_answered
    from invitations
    group by date_day, touchpoint_code, channel, segment

),

responses_daily as (

    select
        response_date as date_day,
        touchpoint_code,
        channel,
        segment,
        count(*) as n_responses,
        count(csat) as csat_n,
        sum(csat) as csat_sum,
        count(nps) as nps_n,
        count(*) filter (where nps >= 9) as nps_promoters,
        count(*) filter (where nps <= 6) as nps_detractors,
        count(ces) as ces_n,
        sum(ces) as ces_sum
    from responses
    group by date_day, touchpoint_code, channel, segment

),

item_ratings_daily as (

    select
        rating_date as date_day,
        touchpoint_code,
        channel,
        segment,
        count(rating) as item_rating_n,
        sum(rating) as item_rating_sum
    from item_ratings
    group by date_day, touchpoint_code, channel, segment

),

grain as (

    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from interactions_daily
    union
    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from invitations_daily
    union
    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from responses_daily
    union
    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from item_ratings_daily
    {%- if is_incremental() %}
    union
    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from previous_cells
    {%- endif %}

),

joined as (

    select
        grain.date_day,
        grain.touchpoint_code,
        grain.channel,
        grain.segment,
        catalogue.kpi_name,
        coalesce(interactions_daily.n_interactions, 0) as n_interactions,
        coalesce(interactions_daily.n_repeat_contacts, 0) as n_repeat_contacts,
        coalesce(invitations_daily.n_invitations, 0) as n_invitations,
        coalesce(invitations_daily.n_invitations_answered, 0) as n_invitations_answered,
        coalesce(responses_daily.n_responses, 0) as n_responses,
        coalesce(responses_daily.csat_n, 0) as csat_n,
        coalesce(responses_daily.csat_sum, 0) as csat_sum,
        coalesce(responses_daily.nps_n, 0) as nps_n,
        coalesce(responses_daily.nps_promoters, 0) as nps_promoters,
        coalesce(responses_daily.nps_detractors, 0) as nps_detractors,
        coalesce(responses_daily.ces_n, 0) as ces_n,
        coalesce(responses_daily.ces_sum, 0) as ces_sum,
        coalesce(item_ratings_daily.item_rating_n, 0) as item_rating_n,
        coalesce(item_ratings_daily.item_rating_sum, 0) as item_rating_sum,
        coalesce(interactions_daily.kpi_n, 0) as kpi_n,
        coalesce(interactions_daily.kpi_sum, 0) as kpi_sum,
        interactions_daily.avg_wait_seconds,
        interactions_daily.avg_handle_seconds,
        interactions_daily.fcr_rate,
        interactions_daily.resolution_rate
    from grain
    left join interactions_daily
        on
            grain.date_day = interactions_daily.date_day
            and grain.touchpoint_code = interactions_daily.touchpoint_code
            and grain.channel = interactions_daily.channel
            and grain.segment = interactions_daily.segment
    left join invitations_daily
        on
            grain.date_day = invitations_daily.date_day
            and grain.touchpoint_code = invitations_daily.touchpoint_code
            and grain.channel = invitations_daily.channel
            and grain.segment = invitations_daily.segment
    left join responses_daily
        on
            grain.date_day = responses_daily.date_day
            and grain.touchpoint_code = responses_daily.touchpoint_code
            and grain.channel = responses_daily.channel
            and grain.segment = responses_daily.segment
    left join item_ratings_daily
        on
            grain.date_day = item_ratings_daily.date_day
            and grain.touchpoint_code = item_ratings_daily.touchpoint_code
            and grain.channel = item_ratings_daily.channel
            and grain.segment = item_ratings_daily.segment
    left join catalogue
        on grain.touchpoint_code = catalogue.touchpoint_code

),

final as (

    select
        cast(date_day as date) as date_day,
        cast(touchpoint_code as text) as touchpoint_code,
        cast(channel as text) as channel,
        cast(segment as text) as segment,
        cast(n_interactions as integer) as n_interactions,
        cast(n_repeat_contacts as integer) as n_repeat_contacts,
        cast(n_invitations as integer) as n_invitations,
        cast(n_invitations_answered as integer) as n_invitations_answered,
        cast(n_responses as integer) as n_responses,
        cast(
            n_invitations_answered * 1.0 / nullif(n_invitations, 0) as double precision
        ) as response_rate,
        cast(csat_sum * 1.0 / nullif(csat_n, 0) as double precision) as csat,
        cast(
            100.0 * (nps_promoters - nps_detractors) / nullif(nps_n, 0) as double precision
        ) as nps,
        cast(ces_sum * 1.0 / nullif(ces_n, 0) as double precision) as ces,
        cast(kpi_name as text) as kpi_name,
        cast(kpi_sum / nullif(kpi_n, 0) as double precision) as kpi_value,
        cast(avg_wait_seconds as double precision) as avg_wait_seconds,
        cast(avg_handle_seconds as double precision) as avg_handle_seconds,
        cast(fcr_rate as double precision) as fcr_rate,
        cast(resolution_rate as double precision) as resolution_rate,
        cast(csat_n as integer) as csat_n,
        cast(csat_sum as bigint) as csat_sum,
        cast(nps_n as integer) as nps_n,
        cast(nps_promoters as integer) as nps_promoters,
        cast(nps_detractors as integer) as nps_detractors,
        cast(ces_n as integer) as ces_n,
        cast(ces_sum as bigint) as ces_sum,
        cast(kpi_n as integer) as kpi_n,
        cast(kpi_sum as double precision) as kpi_sum,
        cast(item_rating_sum * 1.0 / nullif(item_rating_n, 0) as double precision) as item_rating_avg,
        cast(item_rating_n as integer) as item_rating_n,
        cast(item_rating_sum as bigint) as item_rating_sum,
        cast({{ run_date() }} as date) as as_of_date,
        cast(now() as timestamptz) as built_at
    from joined

)

select * from final
