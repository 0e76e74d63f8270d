-- Per touchpoint, the customers who rated it poorly (CSAT <= 2 or NPS <= 6) in
-- the 90 days up to run_date and are still customers, with the value they put
-- at risk: what fixing the touchpoint protects. Shared by the touchpoint rules
-- (fix_first_touchpoint, below_expectation_streak) as their value_at_risk.
with

responses as (

    select * from {{ ref('int_responses_enriched') }}
    where
        response_date between {{ run_date() }} - 89 and {{ run_date() }}
        and (csat <= 2 or nps <= 6)

),

customers as (

    select * from {{ ref('mart_customer_360') }}
    where not churned

),

unhappy as (

    select distinct
        touchpoint_code,
        customer_id
    from responses
    where touchpoint_code is not null

),

final as (

    select
        cast(unhappy.touchpoint_code as text) as touchpoint_code,
        cast(count(*) as integer) as n_unhappy_customers,
        cast(round(coalesce(sum(customers.value_at_risk), 0), 2) as numeric(14, 2)) as value_at_risk
    from unhappy
    inner join customers
        on unhappy.customer_id = customers.customer_id
    group by unhappy.touchpoint_code

)

select * from final
