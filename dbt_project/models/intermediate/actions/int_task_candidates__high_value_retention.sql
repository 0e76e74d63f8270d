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
        cast(as_of_date as date) as as_of_date,
        cast(subject_id as text) as subject_id,
        cast(period as text) as period,
        cast(routing_key as text) as routing_key,
        cast(region as text) as region,
        cast(segment as text) as segment,
        cast(owner_team as text) as owner_team,
        cast(owner_person as text) as owner_person,
        cast(escalation_owner as text) as escalation_owner,
        cast(routed_to_fallback as boolean) as routed_to_fallback,
        cast(marketing_consent as boolean) as marketing_consent,
        cast(value_at_risk as numeric(14, 2)) as value_at_risk,
        cast(coalesce(value_at_risk, 0) as double precision) as priority_score,
        cast('value at risk (12 months of value x churn probability in 90 days)' as text) as priority_reason,
        cast(evidence as jsonb) as evidence
    from routed

)

select * from final
