-- Each customer with a subscription as of run_date, at their cutoff_date (the churn
-- date for churned customers, else run_date): the attributes then, tenure, the
-- satisfaction trend and the answering habit that mart_customer_360 and
-- mart_early_warnings show. Nothing after a churn counts. The churn model reads
-- int_churn_observations, not this.
with

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

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

-- the trend of overall satisfaction over the 180 days up to the cutoff
satisfaction_trend as (

    select
        base.customer_id,
        regr_slope(
            responses.overall_satisfaction,
            extract(epoch from responses.responded_at) / (86400.0 * 30)
        ) as satisfaction_slope
    from base
    inner join responses
        on
            base.customer_id = responses.customer_id
            and base.cutoff_date >= responses.response_date
            and responses.response_date > base.cutoff_date - 180
    group by base.customer_id

),

-- invitations old enough to have been answered, newest first
invitation_history as (

    select
        base.customer_id,
        coalesce(cast(invitations.answered_at as date) <= base.cutoff_date, false) as is_answered,
        row_number() over (
            partition by base.customer_id
            order by invitations.sent_at desc, invitations.invitation_id desc
        ) as recency_rank
    from base
    inner join invitations
        on
            base.customer_id = invitations.customer_id
            and invitations.sent_on <= base.cutoff_date - {{ var('survey_answer_grace_days') }}

),

invitation_features as (

    select
        customer_id,
        count(*) filter (where is_answered) as n_answered_invitations,
        count(*) filter (where recency_rank <= 2 and not is_answered) as n_recent_unanswered
    from invitation_history
    group by customer_id

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
        satisfaction_trend.satisfaction_slope,
        coalesce(
            invitation_features.n_answered_invitations >= 2
            and invitation_features.n_recent_unanswered >= 2,
            false
        ) as silent_after_answering
    from base
    left join satisfaction_trend on base.customer_id = satisfaction_trend.customer_id
    left join invitation_features on base.customer_id = invitation_features.customer_id

)

select * from final
