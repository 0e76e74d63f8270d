{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['date_day', 'touchpoint_code', 'channel', 'segment'],
        on_schema_change='append_new_columns',
    )
}}
-- Day x touchpoint x channel x segment: volumes, survey scores and the
-- touchpoint's operational KPI. Incremental: each run rebuilds the last
-- `lookback_days` days before the newer of run_date and the latest day built,
-- so late-arriving interactions and answers are picked up.
-- Additive parts (sums and counts) are kept so periods can be re-aggregated.
-- Dates: interactions by occurred_at, invitations by sent_at (answered =
-- answered by run_date), scores by responded_at.
{% set window_start -%}
    {%- if is_incremental() -%}
        (
            select least(coalesce(max(date_day), {{ run_date() }}), {{ run_date() }})
            from {{ this }}
        ) - {{ var('lookback_days') }}
    {%- else -%}
        date '1900-01-01'
    {%- endif -%}
{%- endset %}

with

interactions as (

    select * from {{ ref('int_interactions_enriched') }}
    where occurred_on >= {{ window_start }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}
    where sent_on >= {{ window_start }} and touchpoint_code is not null

),

responses as (

    select * from {{ ref('int_responses_enriched') }}
    where response_date >= {{ window_start }} and touchpoint_code is not null

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
    group by 1, 2, 3, 4

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
    group by 1, 2, 3, 4

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
    group by 1, 2, 3, 4

),

grain as (

    select date_day, touchpoint_code, channel, segment from interactions_daily
    union
    select date_day, touchpoint_code, channel, segment from invitations_daily
    union
    select date_day, touchpoint_code, channel, segment from responses_daily

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
        cast(now() as timestamptz) as built_at
    from joined

)

select * from final
