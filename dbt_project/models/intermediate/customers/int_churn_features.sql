-- Each customer with a subscription as of run_date, at their cutoff_date (the churn
-- date for churned customers, else run_date): the attributes then, tenure, the
-- satisfaction trend and the answering habit that mart_customer_360 and
-- mart_early_warnings show. Nothing after a churn counts. The trend and the habit come
-- kept from int_churn_feature_states; the attributes and the tenure at the cutoff are
-- joined here every build. The churn model reads int_churn_observations, not this.
with

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

kept as (

    select * from {{ ref('int_churn_feature_states') }}

),

-- the customer's attributes as they were at the end of the cutoff day
-- (the version with valid_from < cutoff + 1 day <= valid_to; exactly one)
base as (

    select
        subscriptions.customer_id,
        coalesce(customer_history.region, 'unknown') as region,
        coalesce(customer_history.segment, 'unknown') as segment,
        subscriptions.plan,
        subscriptions.monthly_value,
        subscriptions.churned,
        subscriptions.churned_on,
        subscriptions.cutoff_date,
        least(
            coalesce(customer_history.signup_date, subscriptions.first_start_date),
            subscriptions.first_start_date
        ) as signup_date
    from subscriptions
    left join customer_history
        on
            subscriptions.customer_id = customer_history.customer_id
            and cast(subscriptions.cutoff_date + 1 as timestamp)
            <= coalesce(customer_history.valid_to, 'infinity')
            and (
                cast(subscriptions.cutoff_date + 1 as timestamp) > customer_history.valid_from
                or customer_history.version_number = 1
            )

),

final as (

    select
        base.customer_id,
        base.region,
        base.segment,
        base.plan,
        base.monthly_value,
        cast(greatest(base.cutoff_date - base.signup_date, 0) as integer) as tenure_days,
        base.churned,
        base.churned_on,
        base.cutoff_date,
        kept.satisfaction_slope,
        coalesce(
            kept.n_answered_invitations >= 2 and kept.n_recent_unanswered >= 2, false
        ) as silent_after_answering
    from base
    left join kept on base.customer_id = kept.customer_id

)

select * from final
