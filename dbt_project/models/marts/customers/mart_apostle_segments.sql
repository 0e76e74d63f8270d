-- Apostle model: every customer with a relationship-survey answer up to
-- run_date, placed by satisfaction (overall_satisfaction of the latest
-- relationship response, 1-10) x loyalty (likelihood_to_renew, 1-5, and
-- whether they have churned). Cut points are stated on every row.
with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

latest_relationship as (

    select
        *,
        row_number() over (
            partition by customer_id order by responded_at desc, response_id desc
        ) as recency_rank
    from responses
    where
        survey_type = 'relationship'
        and overall_satisfaction is not null
        and likelihood_to_renew is not null

),

placed as (

    select
        latest_relationship.customer_id,
        latest_relationship.response_id,
        latest_relationship.response_date,
        latest_relationship.overall_satisfaction,
        latest_relationship.likelihood_to_renew,
        coalesce(subscriptions.churned, false) as churned,
        subscriptions.churned_on,
        subscriptions.monthly_value,
        coalesce(customers.segment, latest_relationship.segment) as segment,
        coalesce(customers.region, latest_relationship.region) as region,
        {{ apostle_group(
            'latest_relationship.overall_satisfaction',
            'latest_relationship.likelihood_to_renew',
            'subscriptions.churned'
        ) }} as apostle_group
    from latest_relationship
    left join subscriptions
        on latest_relationship.customer_id = subscriptions.customer_id
    left join customers
        on latest_relationship.customer_id = customers.customer_id
    where latest_relationship.recency_rank = 1

),

final as (

    select
        cast(customer_id as text) as customer_id,
        cast(response_id as text) as response_id,
        cast(response_date as date) as response_date,
        cast(segment as text) as segment,
        cast(region as text) as region,
        cast(overall_satisfaction as integer) as overall_satisfaction,
        cast(likelihood_to_renew as integer) as likelihood_to_renew,
        cast(churned as boolean) as churned,
        cast(churned_on as date) as churned_on,
        cast(overall_satisfaction >= {{ var('apostle_satisfaction_cut') }} as boolean) as is_satisfied,
        cast(
            likelihood_to_renew >= {{ var('apostle_loyalty_cut') }} and not churned as boolean
        ) as is_loyal,
        cast(apostle_group as text) as apostle_group,
        cast({{ var('apostle_satisfaction_cut') }} as integer) as satisfaction_cut,
        cast({{ var('apostle_loyalty_cut') }} as integer) as loyalty_cut,
        cast({{ var('apostle_top_satisfaction_cut') }} as integer) as apostle_satisfaction_cut,
        cast({{ var('apostle_top_loyalty_cut') }} as integer) as apostle_loyalty_cut,
        cast(monthly_value as numeric(12, 2)) as monthly_value,
        cast(monthly_value * 12 as numeric(14, 2)) as annual_value
    from placed

)

select * from final
