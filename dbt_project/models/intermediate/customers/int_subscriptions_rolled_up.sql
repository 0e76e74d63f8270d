-- One row per customer with a subscription started by run_date: the subscription
-- that defines the customer's state, the customer's value, whether they have
-- churned and the cutoff_date that bounds every feature computed for them.
-- Active = status in var active_subscription_statuses (cxloop.yml:
-- subscriptions.active_statuses) and not ended by run_date. The state is an
-- active subscription if any, else a running one, else the latest started.
-- Value (monthly_value) = sum of monthly_value * quantity over the active
-- subscriptions; a customer with none keeps the value of the subscriptions that
-- ended with the state one (what was lost), so a churned customer's value is
-- what they held when they left, not 0.
-- Churned = the state subscription's status is not active and its end_date <=
-- run_date; cutoff_date is the churn date, else run_date, so nothing after a
-- churn leaks into the model.
with

subscriptions as (

    select * from {{ ref('stg_crm__subscriptions') }}
    where start_date <= {{ run_date() }}

),

flagged as (

    select
        *,
        (end_date is null or end_date > {{ run_date() }}) as is_running,
        status in {{ active_subscription_statuses() }} as has_active_status
    from subscriptions

),

ranked as (

    select
        *,
        has_active_status and is_running as is_active,
        row_number() over (
            partition by customer_id
            order by
                (has_active_status and is_running) desc,
                is_running desc,
                start_date desc,
                coalesce(end_date, date '9999-12-31') desc,
                subscription_id desc
        ) as state_rank,
        count(*) over (partition by customer_id) as n_subscriptions,
        min(start_date) over (partition by customer_id) as first_start_date
    from flagged

),

current_state as (

    select
        *,
        coalesce(not has_active_status and end_date <= {{ run_date() }}, false) as churned
    from ranked
    where state_rank = 1

),

with_cutoff as (

    select
        *,
        case when churned then end_date end as churned_on,
        case when churned then end_date else {{ run_date() }} end as cutoff_date
    from current_state

),

customer_totals as (

    select
        ranked.customer_id,
        count(*) filter (where ranked.is_active) as n_active_subscriptions,
        sum(ranked.total_monthly_value) filter (where ranked.is_active) as active_value,
        sum(ranked.total_monthly_value) filter (
            where ranked.end_date is not distinct from with_cutoff.end_date
        ) as ended_value,
        -- the earliest renewal still ahead at the cutoff, of a subscription running then
        min(ranked.renewal_date) filter (
            where
            ranked.renewal_date >= with_cutoff.cutoff_date
            and (ranked.end_date is null or ranked.end_date >= with_cutoff.cutoff_date)
        ) as next_renewal_date
    from ranked
    inner join with_cutoff
        on ranked.customer_id = with_cutoff.customer_id
    group by ranked.customer_id

),

final as (

    select
        with_cutoff.customer_id,
        with_cutoff.subscription_id,
        with_cutoff.plan,
        with_cutoff.status,
        with_cutoff.cancel_reason,
        with_cutoff.billing_period,
        with_cutoff.quantity,
        cast(
            case
                when customer_totals.n_active_subscriptions > 0 then customer_totals.active_value
                else customer_totals.ended_value
            end as numeric(14, 2)
        ) as monthly_value,
        with_cutoff.start_date,
        with_cutoff.end_date,
        with_cutoff.renewal_date,
        customer_totals.next_renewal_date,
        customer_totals.next_renewal_date - with_cutoff.cutoff_date as days_to_renewal,
        with_cutoff.first_start_date,
        cast(with_cutoff.n_subscriptions as integer) as n_subscriptions,
        cast(customer_totals.n_active_subscriptions as integer) as n_active_subscriptions,
        with_cutoff.churned,
        with_cutoff.churned_on,
        with_cutoff.cutoff_date
    from with_cutoff
    inner join customer_totals
        on with_cutoff.customer_id = customer_totals.customer_id

)

select * from final
