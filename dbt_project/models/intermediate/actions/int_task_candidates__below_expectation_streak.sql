-- Task rule below_expectation_streak (tasks.yml): a touchpoint whose CSAT stayed
-- below the customer's minimum expectation for the last `periods` consecutive
-- months (task_param, default 2); a month counts once it has `min_responses`
-- answers (default 5), so the streak ends in the run's month, or the month before
-- while the run's month has too few answers yet. Valued by the unhappy customers
-- it puts at risk. Monthly scorecard rows are built as of run_date only, so the
-- rule does not look back.
{%- set periods = task_param('below_expectation_streak', 'periods', 2) | int %}
{%- set min_responses = task_param('below_expectation_streak', 'min_responses', 5) | int %}
with

scorecard as (

    select * from {{ ref('mart_touchpoint_scorecard') }}
    where
        segment = 'all'
        and period_type = 'month'
        and csat is not null
        and n_responses >= {{ min_responses }}
        and period_start <= {{ run_date() }}

),

unhappy_customers as (

    select * from {{ ref('int_touchpoint_unhappy_customers') }}

),

monthly as (

    select
        touchpoint_code,
        period_start,
        csat,
        csat_expectation,
        cast(
            extract(year from age(date_trunc('month', {{ run_date() }}), period_start)) * 12
            + extract(month from age(date_trunc('month', {{ run_date() }}), period_start))
            as integer
        ) as months_ago
    from scorecard

),

anchored as (

    select
        touchpoint_code,
        period_start,
        csat,
        csat_expectation,
        months_ago,
        min(months_ago) over (partition by touchpoint_code) as anchor
    from monthly

),

streaks as (

    select
        touchpoint_code,
        count(*) as months_below,
        min(csat_expectation) as csat_expectation,
        max(csat) filter (where months_ago = anchor) as last_csat,
        min(period_start) as streak_from
    from anchored
    where anchor <= 1 and months_ago < anchor + {{ periods }}
    group by touchpoint_code
    having count(*) = {{ periods }} and bool_and(csat < csat_expectation)

),

candidates as (

    select
        {{ run_date() }} as as_of_date,
        streaks.touchpoint_code as subject_id,
        cast(null as text) as period,
        streaks.touchpoint_code as routing_key,
        cast(null as text) as region,
        cast(null as text) as segment,
        cast(null as boolean) as marketing_consent,
        coalesce(unhappy_customers.value_at_risk, 0) as value_at_risk,
        jsonb_build_object(
            'touchpoint_code', streaks.touchpoint_code,
            'months_below', streaks.months_below,
            'csat_expectation', streaks.csat_expectation,
            'last_csat', streaks.last_csat,
            'streak_from', streaks.streak_from,
            'value_at_risk', coalesce(unhappy_customers.value_at_risk, 0)
        ) as evidence
    from streaks
    left join unhappy_customers
        on streaks.touchpoint_code = unhappy_customers.touchpoint_code

),

routed as (

    {{ route_to_owner('candidates') }}

),

final as (

    select
        {{ task_candidate_columns(
            "value_at_risk",
            "'value at risk of its unhappy customers'"
        ) }}
    from routed

)

select * from final
