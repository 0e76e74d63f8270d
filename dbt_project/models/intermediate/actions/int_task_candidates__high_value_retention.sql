-- Task rule high_value_retention (tasks.yml): a high-value customer (value tier
-- retain_at_all_costs) whose 90-day churn probability passed `min_churn_prob_90`
-- (default 0.25), or who is among the riskiest `top_risk_share` (default 0.05) of
-- scored active customers, so the rule still fires while the model is poorly
-- calibrated. Priority: the value at risk (12 months' value x P(churn in 90
-- days)). Churn scores exist as of run_date only, so the rule does not look back.
{%- set min_churn_prob_90 = task_param('high_value_retention', 'min_churn_prob_90', 0.25) | float %}
{%- set top_risk_share = task_param('high_value_retention', 'top_risk_share', 0.05) | float %}
with

customers as (

    select * from {{ ref('mart_customer_360') }}
    where not churned and churn_prob_90 is not null

),

ranked as (

    select
        customer_id,
        region,
        segment,
        value_tier,
        churn_prob_90,
        value_at_risk,
        annual_value,
        risk_band,
        top_drivers,
        marketing_consent,
        1 - percent_rank() over (order by churn_prob_90) as risk_top_share
    from customers

),

candidates as (

    select
        {{ run_date() }} as as_of_date,
        customer_id as subject_id,
        cast(null as text) as period,
        'customer' as routing_key,
        region,
        segment,
        coalesce(marketing_consent, false) as marketing_consent,
        value_at_risk,
        jsonb_build_object(
            'region', region,
            'segment', segment,
            'value_tier', value_tier,
            'churn_prob_90', churn_prob_90,
            'risk_top_share', round(cast(risk_top_share as numeric), 4),
            'value_at_risk', value_at_risk,
            'annual_value', annual_value,
            'risk_band', risk_band,
            'top_drivers', top_drivers
        ) as evidence
    from ranked
    where
        value_tier = 'retain_at_all_costs'
        and (churn_prob_90 >= {{ min_churn_prob_90 }} or risk_top_share <= {{ top_risk_share }})

),

routed as (

    {{ route_to_owner('candidates') }}

),

final as (

    select
        {{ task_candidate_columns(
            "coalesce(value_at_risk, 0)",
            "'value at risk (12 months of value x churn probability in 90 days)'"
        ) }}
    from routed

)

select * from final
