-- One row per customer with a subscription, as of run_date: the subscription
-- that defines the customer's state (a running one if any, else the latest
-- started), and whether the customer has churned.
-- Churned = that subscription is cancelled with end_date <= run_date; the
-- cutoff_date (churn date, else run_date) bounds every feature computed for the
-- customer, so nothing after a churn leaks into the model.
with

subscriptions as (

    select * from {{ ref('stg_crm__subscriptions') }}
    where start_date <= {{ run_date() }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by
                (end_date is null or end_date > {{ run_date() }}) desc,
                start_date desc,
                coalesce(end_date, date '9999-12-31') desc,
                subscription_id desc
        ) as state_rank,
        count(*) over (partition by customer_id) as n_subscriptions,
        min(start_date) over (partition by customer_id) as first_start_date
    from subscriptions

),

current_state as (

    select * from ranked
    where state_rank = 1

),

final as (

    select
        customer_id,
        subscription_id,
        plan,
        status,
        cancel_reason,
        monthly_value,
        start_date,
        end_date,
        first_start_date,
        cast(n_subscriptions as integer) as n_subscriptions,
        coalesce(
            status in ('cancelled', 'canceled', 'churned')
            and end_date <= {{ run_date() }},
            false
        ) as churned
    from current_state

)

select
    *,
    case when churned then end_date end as churned_on,
    case when churned then end_date else {{ run_date() }} end as cutoff_date
from final
