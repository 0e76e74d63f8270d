-- The costly parts of int_churn_features, kept between nights
-- (macros/churn_feature_states.sql): per customer with a subscription, at their cutoff
-- date (the churn date once churned, else run_date), the satisfaction trend over the 180
-- days up to it and the answering habit over every invitation old enough to count.
-- Nothing here moves with the calendar by itself: a row is recomputed when the
-- customer's rows change or an answer or invitation crosses a window's edge; an
-- incremental build reads the events of those customers only.
{{ config(**churn_feature_states_incremental()) }}
{#- asked once: whether the build can be incremental takes queries of its own -#}
{%- set only_moved = churn_feature_states_only_moved('customer_id') %}
with

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}
    {{ only_moved }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}
    {{ only_moved }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}
    {{ only_moved }}

),

base as (

    select
        customer_id,
        cutoff_date
    from subscriptions

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
        cast(base.customer_id as text) as customer_id,
        cast(satisfaction_trend.satisfaction_slope as double precision) as satisfaction_slope,
        cast(coalesce(invitation_features.n_answered_invitations, 0) as integer)
            as n_answered_invitations,
        cast(coalesce(invitation_features.n_recent_unanswered, 0) as integer)
            as n_recent_unanswered,
        cast(now() as timestamptz) as built_at
    from base
    left join satisfaction_trend on base.customer_id = satisfaction_trend.customer_id
    left join invitation_features on base.customer_id = invitation_features.customer_id

)

select * from final
