{{ config(tags=['after_python']) }}
-- Rule: value_at_risk = monthly_value * 12 * churn_prob_90, and only active
-- customers get a value tier.
select
    customer_id,
    monthly_value,
    churn_prob_90,
    value_at_risk,
    value_tier,
    churned
from {{ ref('mart_customer_360') }}
where
    abs(coalesce(value_at_risk, 0) - round(cast(coalesce(monthly_value * 12 * churn_prob_90, 0) as numeric), 2)) > 0.01
    or (churned and value_tier is not null)
