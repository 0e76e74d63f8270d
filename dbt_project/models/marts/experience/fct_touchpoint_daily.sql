{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['date_day', 'touchpoint_code', 'channel', 'segment'],
        on_schema_change='append_new_columns',
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
--   * any day up to run_date whose events include rows extracted after the
--     run_date the day was last built as of (as_of_date), or that was never
--     built: late-arriving data, historical loads, and days a backfill for an
--     earlier run_date rewound,
--   * the earliest event among rows loaded into raw since the last build
--     (re-delivered extracts of an already seen date),
--   * the earliest date a correction committed since the last build touched
--     (ops.batch_changes: a row a correction removed leaves no newer row behind),
-- and re-emits the cells of those days (up to run_date) that no longer have
-- any event as zeros, so delete+insert on the grain leaves nothing stale; a
-- post-hook then drops those empty cells, which a full build never has.
-- Days after run_date (built by a later run, seen during a backfill) are left
-- alone; readers filter date_day <= run_date.
with

{% if is_incremental() -%}
{#- a table built before as_of_date (or the item ratings) existed counts as built as of
    nothing: every day is rebuilt, so no day keeps null item-rating counts -#}
{%- set built_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
{%- set up_to_date = 'as_of_date' in built_columns and 'item_rating_n' in built_columns -%}
{%- set built_as_of = 'min(as_of_date)' if up_to_date else "date '1900-01-01'" -%}
last_build as (

    select
        max(date_day) as last_day,
        max(built_at) as last_built_at
    from {{ this }}

),

built_days as (

    select
        date_day,
        {{ built_as_of }} as as_of_date
    from {{ this }}
    group by date_day

),

source_days as (

    select
        occurred_on as date_day,
        max(extract_date) as max_extract_date
    from {{ ref('int_interactions_enriched') }}
    group by occurred_on

    union all

    select
        sent_on as date_day,
        max(extract_date) as max_extract_date
    from {{ ref('int_invitations_enriched') }}
    where touchpoint_code is not null
    group by sent_on

    union all

    select
        response_date as date_day,
        max(extract_date) as max_extract_date
    from {{ ref('int_responses_enriched') }}
    where touchpoint_code is not null
    group by response_date

    union all

    select
        rating_date as date_day,
        max(extract_date) as max_extract_date
    from {{ ref('int_item_ratings_enriched') }}
    group by rating_date

),

stale_days as (

    select min(source_days.date_day) as first_stale_day
    from source_days
    left join built_days
        on source_days.date_day = built_days.date_day
    where
        source_days.date_day <= {{ run_date() }}
        and (
            built_days.date_day is null
            or source_days.max_extract_date > built_days.as_of_date
        )

),

rebuild_window as (

    select
        coalesce(
            least(
                least(last_build.last_day, {{ run_date() }}) - {{ var('lookback_days') }},
                (select stale_days.first_stale_day from stale_days),
                (
                    select min(late.occurred_on)
                    from {{ ref('int_interactions_enriched') }} as late
                    where late.loaded_at > last_build.last_built_at
                ),
                (
                    select min(late.sent_on)
                    from {{ ref('int_invitations_enriched') }} as late
                    where late.loaded_at > last_build.last_built_at
                ),
                (
                    select min(least(late.response_date, cast(late.invited_at as date)))
                    from {{ ref('int_responses_enriched') }} as late
                    where late.loaded_at > last_build.last_built_at
                ),
                (
                    select min(late.rating_date)
                    from {{ ref('int_item_ratings_enriched') }} as late
                    where late.loaded_at > last_build.last_built_at
                ),
                (
                    select min(changes.first_affected_date)
                    from {{ source('ingestion', 'batch_changes') }} as changes
                    where changes.at > last_build.last_built_at
                )
            ),
            date '1900-01-01'
        ) as first_day
    from last_build

),

previous_cells as (

    select
        date_day,
        touchpoint_code,
        channel,
        segment
    from {{ this }}
    where
        date_day >= (select rebuild_window.first_day from rebuild_window)
        and date_day <= {{ run_date() }}

),

{% else -%}
rebuild_window as (

    select date '1900-01-01' as first_day

),

{% endif -%}
interactions as (

    select * from {{ ref('int_interactions_enriched') }}
    where occurred_on >= (select rebuild_window.first_day from rebuild_window)

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}
    where
        sent_on >= (select rebuild_window.first_day from rebuild_window)
        and touchpoint_code is not null

),

responses as (

    select * from {{ ref('int_responses_enriched') }}
    where
        response_date >= (select rebuild_window.first_day from rebuild_window)
        and touchpoint_code is not null

),

item_ratings as (

    select * from {{ ref('int_item_ratings_enriched') }}
    where rating_date >= (select rebuild_window.first_day from rebuild_window)

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
