{{ config(tags=['after_python']) }}
-- One row per customer (current CRM attributes, no personal data): tenure,
-- value and value tier, latest survey scores and Apostle group, a journey
-- summary, early-warning flags, churn probabilities and the value at risk.
-- Value tiers (active customers only; null once churned):
--   retain_at_all_costs   top `value_top_share` of active customers by monthly value
--   let_go                bottom `value_low_share` by value and churn_prob_90 >= `let_go_churn_prob_90`
--   retain_appropriately  everyone else
with

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

features as (

    select * from {{ ref('int_churn_features') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

journey_summary as (

    select * from {{ ref('int_customer_journey_summaries') }}

),

orders as (

    select * from {{ ref('stg_crm__orders') }}

),

apostles as (

    select * from {{ ref('mart_apostle_segments') }}

),

warnings as (

    select * from {{ ref('mart_early_warnings') }}

),

scores as (

    select * from {{ ref('mart_churn_scores_latest') }}

),

latest_scores as (

    select
        customer_id,
        count(*) as n_responses,
        max(response_date) as last_response_date,
        {{ latest_value('nps', 'responded_at') }} as last_nps,
        {{ latest_value('csat', 'responded_at') }} as last_csat,
        {{ latest_value('ces', 'responded_at') }} as last_ces,
        {{ latest_value('overall_satisfaction', 'responded_at') }} as last_overall_satisfaction,
        {{ latest_value('likelihood_to_renew', 'responded_at') }} as last_likelihood_to_renew
    from responses
    group by customer_id

),

order_summary as (

    select
        customer_id,
        count(*) as n_orders,
        sum(amount) as lifetime_order_value,
        max(order_date) as last_order_date
    from orders
    group by customer_id

),

warning_summary as (

    select
        customer_id,
        count(*) as n_warning_flags,
        string_agg(flag, ', ' order by flag) as warning_flags
    from warnings
    group by customer_id

),

valued as (

    select
        customers.customer_id,
        percent_rank() over (
            order by subscriptions.monthly_value desc
        ) as value_rank_share
    from customers
    inner join subscriptions
        on customers.customer_id = subscriptions.customer_id
    where not subscriptions.churned

),

joined as (

    select
        customers.customer_id,
        customers.region,
        customers.segment,
        coalesce(subscriptions.plan, customers.plan) as plan,
        customers.acquisition_channel,
        customers.marketing_consent,
        customers.signup_date,
        subscriptions.subscription_id is not null as has_subscription,
        coalesce(subscriptions.churned, false) as churned,
        subscriptions.churned_on,
        subscriptions.cancel_reason,
        features.tenure_days,
        subscriptions.monthly_value,
        subscriptions.monthly_value * 12 as annual_value,
        order_summary.n_orders,
        order_summary.lifetime_order_value,
        valued.value_rank_share,
        case
            when valued.customer_id is null then null
            when valued.value_rank_share < {{ var('value_top_share') }} then 'retain_at_all_costs'
            when valued.value_rank_share >= 1 - {{ var('value_low_share') }}
                and scores.churn_prob_90 >= {{ var('let_go_churn_prob_90') }}
                then 'let_go'
            else 'retain_appropriately'
        end as value_tier,
        latest_scores.n_responses,
        latest_scores.last_response_date,
        latest_scores.last_nps,
        latest_scores.last_csat,
        latest_scores.last_ces,
        latest_scores.last_overall_satisfaction,
        latest_scores.last_likelihood_to_renew,
        apostles.apostle_group,
        journey_summary.n_interactions,
        journey_summary.n_touchpoints,
        journey_summary.first_interaction_at,
        journey_summary.last_interaction_at,
        journey_summary.last_touchpoint_code,
        journey_summary.n_repeat_contacts,
        journey_summary.n_unresolved,
        journey_summary.journey_stages_seen,
        features.silent_after_answering,
        features.satisfaction_slope,
        coalesce(warning_summary.n_warning_flags, 0) as n_warning_flags,
        warning_summary.warning_flags,
        scores.score_run_date,
        scores.model_version,
        scores.churn_prob_30,
        scores.churn_prob_90,
        scores.churn_prob_180,
        scores.expected_remaining_days,
        scores.risk_band,
        scores.top_drivers,
        subscriptions.monthly_value * 12 * scores.churn_prob_90 as value_at_risk
    from customers
    left join subscriptions on customers.customer_id = subscriptions.customer_id
    left join features on customers.customer_id = features.customer_id
    left join order_summary on customers.customer_id = order_summary.customer_id
    left join valued on customers.customer_id = valued.customer_id
    left join latest_scores on customers.customer_id = latest_scores.customer_id
    left join apostles on customers.customer_id = apostles.customer_id
    left join journey_summary on customers.customer_id = journey_summary.customer_id
    left join warning_summary on customers.customer_id = warning_summary.customer_id
    left join scores on customers.customer_id = scores.customer_id

),

final as (

    select
        cast(customer_id as text) as customer_id,
        cast(region as text) as region,
        cast(segment as text) as segment,
        cast(plan as text) as plan,
        cast(acquisition_channel as text) as acquisition_channel,
        cast(marketing_consent as boolean) as marketing_consent,
        cast(signup_date as date) as signup_date,
        cast(has_subscription as boolean) as has_subscription,
        cast(churned as boolean) as churned,
        cast(churned_on as date) as churned_on,
        cast(cancel_reason as text) as cancel_reason,
        cast(tenure_days as integer) as tenure_days,
        cast(monthly_value as numeric(12, 2)) as monthly_value,
        cast(annual_value as numeric(14, 2)) as annual_value,
        cast(coalesce(n_orders, 0) as integer) as n_orders,
        cast(coalesce(lifetime_order_value, 0) as numeric(14, 2)) as lifetime_order_value,
        cast(value_rank_share as double precision) as value_rank_share,
        cast(value_tier as text) as value_tier,
        cast(coalesce(n_responses, 0) as integer) as n_responses,
        cast(last_response_date as date) as last_response_date,
        cast(last_nps as integer) as last_nps,
        cast(last_csat as integer) as last_csat,
        cast(last_ces as integer) as last_ces,
        cast(last_overall_satisfaction as integer) as last_overall_satisfaction,
        cast(last_likelihood_to_renew as integer) as last_likelihood_to_renew,
        cast(apostle_group as text) as apostle_group,
        cast(coalesce(n_interactions, 0) as integer) as n_interactions,
        cast(coalesce(n_touchpoints, 0) as integer) as n_touchpoints,
        cast(first_interaction_at as timestamp) as first_interaction_at,
        cast(last_interaction_at as timestamp) as last_interaction_at,
        cast(last_touchpoint_code as text) as last_touchpoint_code,
        cast(coalesce(n_repeat_contacts, 0) as integer) as n_repeat_contacts,
        cast(coalesce(n_unresolved, 0) as integer) as n_unresolved,
        cast(journey_stages_seen as text) as journey_stages_seen,
        cast(silent_after_answering as boolean) as silent_after_answering,
        cast(satisfaction_slope as double precision) as satisfaction_slope,
        cast(n_warning_flags as integer) as n_warning_flags,
        cast(warning_flags as text) as warning_flags,
        cast(score_run_date as date) as score_run_date,
        cast(model_version as text) as model_version,
        cast(churn_prob_30 as double precision) as churn_prob_30,
        cast(churn_prob_90 as double precision) as churn_prob_90,
        cast(churn_prob_180 as double precision) as churn_prob_180,
        cast(expected_remaining_days as double precision) as expected_remaining_days,
        cast(risk_band as text) as risk_band,
        cast(top_drivers as jsonb) as top_drivers,
        cast(value_at_risk as numeric(14, 2)) as value_at_risk
    from joined

)

select * from final
