{{ config(tags=['after_python']) }}
-- The latest churn score of each customer as of run_date (scores written for
-- later run dates are ignored, so a backfill sees what that date saw), with
-- the customer's attributes, a risk band and the value at risk. Risk bands are shares
-- of the scored customers, riskiest first (vars churn_risk_band_high_share and
-- churn_risk_band_medium_share, from cxloop.yml churn.risk_bands): a retention team
-- with capacity for the top 5 % filters on 'high' and gets that many customers.
with

scores as (

    select * from {{ source('python_outputs', 'churn_scores') }}
    where run_date <= {{ run_date() }}

),

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

latest as (

    select distinct on (customer_id) *
    from scores
    order by customer_id asc, run_date desc, scored_at desc

),

ranked as (

    select
        *,
        -- share of scored customers at least this risky (riskiest ~ 1 / n, safest 1)
        cume_dist() over (order by churn_prob_90 desc) as risk_share
    from latest

),

final as (

    select
        cast(latest.customer_id as text) as customer_id,
        cast(latest.run_date as date) as score_run_date,
        cast(latest.scored_at as timestamptz) as scored_at,
        cast(latest.model_version as text) as model_version,
        cast(customers.segment as text) as segment,
        cast(customers.region as text) as region,
        cast(coalesce(subscriptions.plan, customers.plan) as text) as plan,
        cast(subscriptions.monthly_value as numeric(12, 2)) as monthly_value,
        cast(latest.tenure_days as integer) as tenure_days,
        cast(latest.survival_30 as double precision) as survival_30,
        cast(latest.survival_90 as double precision) as survival_90,
        cast(latest.survival_180 as double precision) as survival_180,
        cast(latest.churn_prob_30 as double precision) as churn_prob_30,
        cast(latest.churn_prob_90 as double precision) as churn_prob_90,
        cast(latest.churn_prob_180 as double precision) as churn_prob_180,
        cast(latest.expected_remaining_days as double precision) as expected_remaining_days,
        cast(
            case
                when latest.risk_share <= {{ var('churn_risk_band_high_share') }} then 'high'
                when
                    latest.risk_share
                    <= {{ var('churn_risk_band_high_share') }} + {{ var('churn_risk_band_medium_share') }}
                    then 'medium'
                else 'low'
            end as text
        ) as risk_band,
        cast(latest.risk_share as double precision) as risk_share,
        cast(subscriptions.monthly_value * 12 * latest.churn_prob_90 as numeric(14, 2)) as value_at_risk,
        cast(latest.top_drivers as jsonb) as top_drivers
    from ranked as latest
    left join customers
        on latest.customer_id = customers.customer_id
    left join subscriptions
        on latest.customer_id = subscriptions.customer_id

)

select * from final
