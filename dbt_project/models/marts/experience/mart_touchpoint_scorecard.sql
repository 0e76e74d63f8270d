-- Touchpoint scorecard: per touchpoint x segment ('all' = every segment) x
-- period (each calendar month up to run_date, month to date for the current
-- one, and the last 30 days), each measure with its gap to the customer's
-- expectation, its benchmark-scaled score (expectation = 0, benchmark = 100,
-- macro benchmark_scaled) and the trend against the previous period
-- (previous month; the 30 days before the last 30).
-- Relationship-survey item ratings appear beside transactional CSAT
-- (item_rating_avg, item_ratings), so a survey-only programme with item ratings
-- alone still gets a row per touchpoint; their benchmark-scaled item_score needs
-- the optional catalogue columns item_rating_expectation / item_rating_benchmark
-- (null without them).
{%- set catalogue_columns = [] %}
{%- if execute %}
    {%- set catalogue_columns = adapter.get_columns_in_relation(ref('touchpoint_catalogue'))
        | map(attribute='name') | list %}
{%- endif %}
{%- set has_item_levels = 'item_rating_expectation' in catalogue_columns
    and 'item_rating_benchmark' in catalogue_columns %}
with

daily as (

    select * from {{ ref('fct_touchpoint_daily') }}
    where date_day <= {{ run_date() }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

-- every daily row placed in the periods it belongs to; prior_30_days only
-- serves as the previous period of last_30_days
periodized as (

    select
        'month' as period_type,
        cast(date_trunc('month', daily.date_day) as date) as period_start,
        daily.*
    from daily

    union all

    select
        'last_30_days' as period_type,
        {{ run_date() }} - 29 as period_start,
        daily.*
    from daily
    where daily.date_day > {{ run_date() }} - 30

    union all

    select
        'prior_30_days' as period_type,
        {{ run_date() }} - 59 as period_start,
        daily.*
    from daily
    where daily.date_day > {{ run_date() }} - 60 and daily.date_day <= {{ run_date() }} - 30

),

aggregated as (

    select
        touchpoint_code,
        coalesce(segment, 'all') as segment,
        period_type,
        period_start,
        sum(n_interactions) as n_interactions,
        sum(n_invitations) as n_invitations,
        sum(n_responses) as n_responses,
        sum(n_invitations_answered) * 1.0 / nullif(sum(n_invitations), 0) as response_rate,
        sum(csat_sum) * 1.0 / nullif(sum(csat_n), 0) as csat,
        100.0 * (sum(nps_promoters) - sum(nps_detractors)) / nullif(sum(nps_n), 0) as nps,
        sum(ces_sum) * 1.0 / nullif(sum(ces_n), 0) as ces,
        sum(kpi_sum) / nullif(sum(kpi_n), 0) as kpi_value,
        sum(item_rating_n) as item_ratings,
        sum(item_rating_sum) * 1.0 / nullif(sum(item_rating_n), 0) as item_rating_avg
    from periodized
    group by grouping sets (
        (touchpoint_code, segment, period_type, period_start),
        (touchpoint_code, period_type, period_start)
    )

),

scored as (

    select
        aggregated.*,
        case aggregated.period_type
            when 'month'
                then cast(aggregated.period_start + interval '1 month' - interval '1 day' as date)
            else aggregated.period_start + 29
        end as period_end_nominal,
        case aggregated.period_type
            when 'month' then cast(aggregated.period_start - interval '1 month' as date)
            when 'last_30_days' then aggregated.period_start - 30
        end as previous_period_start,
        case aggregated.period_type
            when 'month' then 'month'
            when 'last_30_days' then 'prior_30_days'
        end as previous_period_type,
        catalogue.touchpoint_name,
        catalogue.journey_stage,
        catalogue.is_key_touchpoint,
        catalogue.owner_team,
        catalogue.kpi_name,
        catalogue.kpi_higher_is_better,
        catalogue.csat_expectation,
        catalogue.csat_benchmark,
        catalogue.nps_expectation,
        catalogue.nps_benchmark,
        catalogue.ces_expectation,
        catalogue.ces_benchmark,
        catalogue.kpi_expectation,
        catalogue.kpi_benchmark,
        {%- if has_item_levels %}
        cast(catalogue.item_rating_expectation as double precision) as item_rating_expectation,
        cast(catalogue.item_rating_benchmark as double precision) as item_rating_benchmark,
        {{ benchmark_scaled(
            'aggregated.item_rating_avg',
            'catalogue.item_rating_expectation',
            'catalogue.item_rating_benchmark'
        ) }} as item_score,
        {%- else %}
        cast(null as double precision) as item_rating_expectation,
        cast(null as double precision) as item_rating_benchmark,
        cast(null as double precision) as item_score,
        {%- endif %}
        {{ benchmark_scaled(
            'aggregated.csat', 'catalogue.csat_expectation', 'catalogue.csat_benchmark'
        ) }} as csat_score,
        {{ benchmark_scaled(
            'aggregated.nps', 'catalogue.nps_expectation', 'catalogue.nps_benchmark'
        ) }} as nps_score,
        {{ benchmark_scaled(
            'aggregated.ces', 'catalogue.ces_expectation', 'catalogue.ces_benchmark'
        ) }} as ces_score,
        {{ benchmark_scaled(
            'aggregated.kpi_value', 'catalogue.kpi_expectation', 'catalogue.kpi_benchmark'
        ) }} as kpi_score,
        -- gaps in the measure's units, signed so that positive = better than expected
        (aggregated.csat - catalogue.csat_expectation)
        * sign(catalogue.csat_benchmark - catalogue.csat_expectation) as csat_gap,
        (aggregated.nps - catalogue.nps_expectation)
        * sign(catalogue.nps_benchmark - catalogue.nps_expectation) as nps_gap,
        (aggregated.ces - catalogue.ces_expectation)
        * sign(catalogue.ces_benchmark - catalogue.ces_expectation) as ces_gap,
        (aggregated.kpi_value - catalogue.kpi_expectation)
        * sign(catalogue.kpi_benchmark - catalogue.kpi_expectation) as kpi_gap
    from aggregated
    left join catalogue
        on aggregated.touchpoint_code = catalogue.touchpoint_code

),

with_previous as (

    select
        current_period.*,
        previous_period.response_rate as previous_response_rate,
        previous_period.csat as previous_csat,
        previous_period.nps as previous_nps,
        previous_period.ces as previous_ces,
        previous_period.kpi_value as previous_kpi_value,
        previous_period.csat_score as previous_csat_score,
        previous_period.nps_score as previous_nps_score,
        previous_period.ces_score as previous_ces_score,
        previous_period.kpi_score as previous_kpi_score,
        previous_period.item_rating_avg as previous_item_rating_avg,
        previous_period.item_score as previous_item_score
    from scored as current_period
    left join scored as previous_period
        on
            current_period.touchpoint_code = previous_period.touchpoint_code
            and current_period.segment = previous_period.segment
            and current_period.previous_period_type = previous_period.period_type
            and current_period.previous_period_start = previous_period.period_start
    where current_period.period_type in ('month', 'last_30_days')

),

final as (

    select
        cast(
            touchpoint_code || '|' || segment || '|' || period_type || '|' || period_start as text
        ) as scorecard_key,
        cast(touchpoint_code as text) as touchpoint_code,
        cast(segment as text) as segment,
        cast(period_type as text) as period_type,
        cast(period_start as date) as period_start,
        cast(least(period_end_nominal, {{ run_date() }}) as date) as period_end,
        cast(touchpoint_name as text) as touchpoint_name,
        cast(journey_stage as text) as journey_stage,
        cast(is_key_touchpoint as boolean) as is_key_touchpoint,
        cast(owner_team as text) as owner_team,
        cast(n_interactions as integer) as n_interactions,
        cast(n_invitations as integer) as n_invitations,
        cast(n_responses as integer) as n_responses,
        cast(response_rate as double precision) as response_rate,
        cast(csat as double precision) as csat,
        cast(csat_expectation as double precision) as csat_expectation,
        cast(csat_benchmark as double precision) as csat_benchmark,
        cast(csat_gap as double precision) as csat_gap,
        cast(csat_score as double precision) as csat_score,
        cast(nps as double precision) as nps,
        cast(nps_expectation as double precision) as nps_expectation,
        cast(nps_benchmark as double precision) as nps_benchmark,
        cast(nps_gap as double precision) as nps_gap,
        cast(nps_score as double precision) as nps_score,
        cast(ces as double precision) as ces,
        cast(ces_expectation as double precision) as ces_expectation,
        cast(ces_benchmark as double precision) as ces_benchmark,
        cast(ces_gap as double precision) as ces_gap,
        cast(ces_score as double precision) as ces_score,
        cast(kpi_name as text) as kpi_name,
        cast(kpi_higher_is_better as boolean) as kpi_higher_is_better,
        cast(kpi_value as double precision) as kpi_value,
        cast(kpi_expectation as double precision) as kpi_expectation,
        cast(kpi_benchmark as double precision) as kpi_benchmark,
        cast(kpi_gap as double precision) as kpi_gap,
        cast(kpi_score as double precision) as kpi_score,
        cast(item_ratings as integer) as item_ratings,
        cast(item_rating_avg as double precision) as item_rating_avg,
        cast(item_rating_expectation as double precision) as item_rating_expectation,
        cast(item_rating_benchmark as double precision) as item_rating_benchmark,
        cast(item_score as double precision) as item_score,
        cast(
            (
                coalesce(csat_score, 0) + coalesce(nps_score, 0)
                + coalesce(ces_score, 0) + coalesce(kpi_score, 0) + coalesce(item_score, 0)
            )
            / nullif(
                cast(csat_score is not null as integer) + cast(nps_score is not null as integer)
                + cast(ces_score is not null as integer) + cast(kpi_score is not null as integer)
                + cast(item_score is not null as integer),
                0
            ) as double precision
        ) as experience_score,
        cast(previous_period_start as date) as previous_period_start,
        cast(previous_response_rate as double precision) as previous_response_rate,
        cast(previous_csat as double precision) as previous_csat,
        cast(previous_nps as double precision) as previous_nps,
        cast(previous_ces as double precision) as previous_ces,
        cast(previous_kpi_value as double precision) as previous_kpi_value,
        cast(previous_item_rating_avg as double precision) as previous_item_rating_avg,
        cast(csat_score - previous_csat_score as double precision) as csat_score_trend,
        cast(nps_score - previous_nps_score as double precision) as nps_score_trend,
        cast(ces_score - previous_ces_score as double precision) as ces_score_trend,
        cast(kpi_score - previous_kpi_score as double precision) as kpi_score_trend,
        cast(item_score - previous_item_score as double precision) as item_score_trend
    from with_previous

)

select * from final
