-- Input of the survival (churn) model: one row per customer with a
-- subscription, as of run_date. Every feature is computed up to the customer's
-- cutoff_date (the churn date for churned customers, else run_date), so
-- nothing that happened after a churn leaks in.
with

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

interactions as (

    select * from {{ ref('int_interactions_enriched') }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

item_ratings as (

    select * from {{ ref('stg_survey__item_ratings') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

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

interaction_features as (

    select
        base.customer_id,
        count(*) as n_interactions_90d,
        count(*) filter (where not interactions.is_resolved) as n_unresolved_90d,
        count(*) filter (where interactions.is_repeat_contact) as n_repeat_contacts_90d,
        avg(interactions.wait_seconds) as avg_wait_seconds_90d
    from base
    inner join interactions
        on
            base.customer_id = interactions.customer_id
            and base.cutoff_date >= interactions.occurred_on
            and interactions.occurred_on > base.cutoff_date - 90
    group by base.customer_id

),

-- transactional CSAT and relationship item ratings share the 1-5 scale
touchpoint_ratings as (

    select
        responses.customer_id,
        responses.touchpoint_code,
        responses.response_date as rated_on,
        cast(responses.csat as double precision) as rating
    from responses
    where responses.csat is not null and responses.touchpoint_code is not null

    union all

    select
        item_ratings.customer_id,
        item_ratings.touchpoint_code,
        cast(item_ratings.responded_at as date) as rated_on,
        cast(item_ratings.rating as double precision) as rating
    from item_ratings

),

rating_features as (

    select
        base.customer_id,
        avg(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage = 'billing'
        ) as billing_rating,
        avg(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage = 'support'
        ) as support_rating,
        avg(touchpoint_ratings.rating) filter (
            where touchpoint_ratings.touchpoint_code = 'installation'
        ) as installation_rating
    from base
    inner join touchpoint_ratings
        on
            base.customer_id = touchpoint_ratings.customer_id
            and base.cutoff_date >= touchpoint_ratings.rated_on
    left join catalogue
        on touchpoint_ratings.touchpoint_code = catalogue.touchpoint_code
    group by base.customer_id

),

responses_so_far as (

    select
        base.customer_id,
        base.cutoff_date,
        responses.response_id,
        responses.responded_at,
        responses.response_date,
        responses.nps,
        responses.csat,
        responses.overall_satisfaction
    from base
    inner join responses
        on
            base.customer_id = responses.customer_id
            and base.cutoff_date >= responses.response_date

),

response_features as (

    select
        customer_id,
        count(*) as n_responses,
        avg(csat) as avg_csat,
        {{ latest_value('nps', 'responded_at') }} as last_nps,
        regr_slope(
            overall_satisfaction,
            extract(epoch from responded_at) / (86400.0 * 30)
        ) filter (
            where response_date > cutoff_date - 180
        ) as satisfaction_slope
    from responses_so_far
    group by customer_id

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
        cast(coalesce(interaction_features.n_interactions_90d, 0) as integer) as n_interactions_90d,
        cast(coalesce(interaction_features.n_unresolved_90d, 0) as integer) as n_unresolved_90d,
        cast(
            coalesce(interaction_features.n_repeat_contacts_90d, 0) as integer
        ) as n_repeat_contacts_90d,
        cast(interaction_features.avg_wait_seconds_90d as double precision) as avg_wait_seconds_90d,
        rating_features.billing_rating,
        rating_features.support_rating,
        rating_features.installation_rating,
        cast(response_features.avg_csat as double precision) as avg_csat,
        response_features.last_nps,
        response_features.last_nps <= 6 as is_detractor,
        response_features.satisfaction_slope,
        cast(coalesce(response_features.n_responses, 0) as integer) as n_responses,
        coalesce(
            invitation_features.n_answered_invitations >= 2
            and invitation_features.n_recent_unanswered >= 2,
            false
        ) as silent_after_answering
    from base
    left join interaction_features on base.customer_id = interaction_features.customer_id
    left join rating_features on base.customer_id = rating_features.customer_id
    left join response_features on base.customer_id = response_features.customer_id
    left join invitation_features on base.customer_id = invitation_features.customer_id

)

select * from final
