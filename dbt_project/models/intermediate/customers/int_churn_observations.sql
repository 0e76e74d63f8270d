-- Rows of the churn model's landmark design: one per observation date (every
-- churn_observation_every_days back from run_date, after the first extract) and customer
-- active on it. Features use only events dated up to the observation date, over windows
-- clipped to the loaded data (rates per 90 observed days; null without observed days).
-- churned_on (known at run_date) is the target, not a feature.
-- The first extract date is read through an index on the staging subscriptions (the
-- pre-hook makes it once): min() then reads one index entry, not the whole table.
{{ config(pre_hook=["{{ ensure_indexes(['extract_date'], ref('stg_crm__subscriptions')) }}"]) }}
{%- set window_days = var('churn_feature_window_days') %}
{%- set every_days = var('churn_observation_every_days') %}
{%- set grace_days = var('survey_answer_grace_days') %}
{%- set rating_stages = var('churn_rating_stages') %}
{%- set shrink = var('churn_shrinkage') %}
{%- set ltr_range = var('domain_scales')['responses.likelihood_to_renew'] %}
{%- set os_range = var('domain_scales')['responses.overall_satisfaction'] %}
{#- renewal dates int_subscription_versions carries, as known on each date -#}
{%- set renewal_column = (var('churn_renewal_date_columns') | select('in', ['renewal_date']) | list | first) or none %}
-- The big event tables are read by several CTEs each: `not materialized` has each read
-- scan the table for the columns it needs, where a materialized CTE would copy every
-- column of ten million rows into a temporary store first.
with

all_subscriptions as (

    select * from {{ ref('stg_crm__subscriptions') }}

),

subscription_versions as not materialized (

    select * from {{ ref('int_subscription_versions') }}

),

rolled_up as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

interactions as not materialized (

    select * from {{ ref('int_interactions_enriched') }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}

),

responses as not materialized (

    select * from {{ ref('int_responses_enriched') }}

),

item_ratings as (

    select * from {{ ref('stg_survey__item_ratings') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

bounds as (

    select
        min(extract_date) as data_start_date,
        {{ run_date() }} as run_date
    from all_subscriptions

),

observation_dates as (

    select
        bounds.data_start_date,
        cast(series.observation_date as date) as observation_date
    from bounds
    cross join lateral generate_series(
        cast(bounds.run_date as timestamp),
        cast(bounds.data_start_date + 1 as timestamp),
        interval '-{{ every_days }} days'
    ) as series (observation_date)

),

-- each subscription running on each observation date as the warehouse knew it then (and
-- one window earlier, for the value trend): never a version extracted later. Read by the
-- sample's narrow pairs and by the wide rows: not materialized, each reads its columns.
known_on_date as not materialized (

    select
        observation_dates.observation_date,
        observation_dates.data_start_date,
        subscription_versions.*
    from observation_dates
    inner join subscription_versions
        on
            observation_dates.observation_date >= subscription_versions.known_from
            and observation_dates.observation_date
            < coalesce(subscription_versions.known_until, date '9999-12-31')
    where
        observation_dates.observation_date >= subscription_versions.start_date
        and coalesce(subscription_versions.end_date, date '9999-12-31')
        > observation_dates.observation_date

),

known_window_before as (

    select
        observation_dates.observation_date,
        subscription_versions.*
    from observation_dates
    inner join subscription_versions
        on
            subscription_versions.known_from
            <= observation_dates.observation_date - {{ window_days }}
            and coalesce(subscription_versions.known_until, date '9999-12-31')
            > observation_dates.observation_date - {{ window_days }}

),

-- earlier dates of a large base are sampled by whole customers (a hash of the id, the
-- same one the churn stage samples by) to about churn_history_max_rows rows; run_date's
-- rows, which are scored, are always complete. Whole customers need no weights. The
-- sample's size is set from the subscriptions running on those dates, before the wide
-- rows are built: a customer with two running at once counts twice, so the sample comes
-- out a little under the cap (counting distinct customer-dates took 16 s at 1M).
history_sample as (

    select
        least(
            1024,
            ceil(1024.0 * {{ var('churn_history_max_rows') }} / nullif(count(*), 0))
        ) as buckets
    from known_on_date
    where known_on_date.observation_date < {{ run_date() }}

),

-- the subscription running on each observation date (the latest started if several)
running as (

    select distinct on (known_on_date.observation_date, known_on_date.customer_id)
        known_on_date.observation_date,
        known_on_date.data_start_date,
        known_on_date.customer_id,
        known_on_date.plan,
        known_on_date.monthly_value,
        known_on_date.start_date,
        known_on_date.known_from as subscription_known_on,
        {%- if renewal_column %}
        known_on_date.{{ adapter.quote(renewal_column) }} as renewal_date
        {%- else %}
        cast(null as date) as renewal_date
        {%- endif %}
    from known_on_date
    cross join history_sample
    where
        known_on_date.observation_date = {{ run_date() }}
        or (hashtext(known_on_date.customer_id) & 1023) < coalesce(history_sample.buckets, 1024)
    order by
        known_on_date.observation_date asc,
        known_on_date.customer_id asc,
        known_on_date.start_date desc,
        known_on_date.subscription_id desc

),

value_before as (

    select distinct on (known_window_before.observation_date, known_window_before.customer_id)
        known_window_before.observation_date,
        known_window_before.customer_id,
        known_window_before.monthly_value as monthly_value_before
    from known_window_before
    cross join history_sample
    where
        (
            known_window_before.observation_date = {{ run_date() }}
            or (hashtext(known_window_before.customer_id) & 1023)
            < coalesce(history_sample.buckets, 1024)
        )
        and known_window_before.start_date
        <= known_window_before.observation_date - {{ window_days }}
        and coalesce(known_window_before.end_date, date '9999-12-31')
        > known_window_before.observation_date - {{ window_days }}
    order by
        known_window_before.observation_date asc,
        known_window_before.customer_id asc,
        known_window_before.start_date desc,
        known_window_before.subscription_id desc

),

base as (

    select
        running.observation_date,
        running.data_start_date,
        running.customer_id,
        running.plan,
        running.monthly_value,
        running.start_date as subscription_start_date,
        running.subscription_known_on,
        running.renewal_date,
        coalesce(customer_history.region, 'unknown') as region,
        coalesce(customer_history.segment, 'unknown') as segment,
        least(
            coalesce(customer_history.signup_date, rolled_up.first_start_date),
            rolled_up.first_start_date
        ) as signup_date,
        rolled_up.churned_on,
        least({{ window_days }}, running.observation_date - running.data_start_date + 1)
            as observed_window_days,
        running.observation_date - running.data_start_date + 1 as observed_history_days
    from running
    inner join rolled_up
        on
            running.customer_id = rolled_up.customer_id
            -- a cancellation exported after the date it took effect: not a customer then
            and coalesce(rolled_up.churned_on, date '9999-12-31') > running.observation_date
    left join customer_history
        on
            running.customer_id = customer_history.customer_id
            and cast(running.observation_date + 1 as timestamp)
            <= coalesce(customer_history.valid_to, 'infinity')
            and (
                cast(running.observation_date + 1 as timestamp) > customer_history.valid_from
                or customer_history.version_number = 1
            )

),

interaction_features as (

    select
        base.observation_date,
        base.customer_id,
        count(*) filter (where interactions.occurred_on > base.observation_date - {{ window_days }})
            as n_interactions,
        count(*) filter (
            where
            interactions.occurred_on > base.observation_date - {{ window_days }}
            and not interactions.is_resolved
        ) as n_unresolved,
        count(*) filter (
            where
            interactions.occurred_on > base.observation_date - {{ window_days }}
            and interactions.is_repeat_contact
        ) as n_repeat_contacts,
        avg(interactions.wait_seconds) filter (
            where interactions.occurred_on > base.observation_date - {{ window_days }}
        ) as avg_wait_seconds,
        count(*) as n_interactions_history,
        count(*) filter (where not interactions.is_resolved) as n_unresolved_history,
        max(interactions.occurred_on) as last_interaction_on
    from base
    inner join interactions
        on
            base.customer_id = interactions.customer_id
            and base.observation_date >= interactions.occurred_on
            and base.data_start_date <= interactions.occurred_on
    group by base.observation_date, base.customer_id

),

-- transactional CSAT and relationship item ratings share one scale
touchpoint_ratings as not materialized (

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

-- every customer's ratings per journey stage up to each observation date: the prior
-- that a customer's few ratings are shrunk towards
stage_daily as (

    select
        touchpoint_ratings.rated_on,
        catalogue.journey_stage,
        sum(touchpoint_ratings.rating) as rating_sum,
        count(*) as n_ratings
    from touchpoint_ratings
    inner join catalogue
        on touchpoint_ratings.touchpoint_code = catalogue.touchpoint_code
    group by touchpoint_ratings.rated_on, catalogue.journey_stage

),

stage_means as (

    select
        observation_dates.observation_date,
        stage_daily.journey_stage,
        sum(stage_daily.rating_sum) * 1.0 / sum(stage_daily.n_ratings) as stage_mean
    from observation_dates
    inner join stage_daily
        on
            observation_dates.observation_date >= stage_daily.rated_on
            and observation_dates.data_start_date <= stage_daily.rated_on
    group by observation_dates.observation_date, stage_daily.journey_stage

),

rating_features as (

    select
        base.observation_date,
        base.customer_id,
        avg(touchpoint_ratings.rating) filter (
            where touchpoint_ratings.rated_on > base.observation_date - {{ window_days }}
        ) as rating_recent,
        avg(touchpoint_ratings.rating) filter (
            where touchpoint_ratings.rated_on <= base.observation_date - {{ window_days }}
        ) as rating_earlier,
        {%- for stage in rating_stages %}
        avg(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage = '{{ stage }}'
        ) as {{ adapter.quote('rating_' ~ stage) }},
        -- the stage against the customer's own ratings elsewhere: their general mood
        -- (and a habit of rating everything high) cancels out
        avg(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage = '{{ stage }}'
        )
        - avg(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage is distinct from '{{ stage }}'
        ) as {{ adapter.quote('rating_' ~ stage ~ '_vs_own') }},
        -- the stage's ratings against everyone's, shrunk by how many there are (an
        -- estimate of the customer's lasting experience there, 0 without a rating)
        sum(touchpoint_ratings.rating - stage_means.stage_mean) filter (
            where catalogue.journey_stage = '{{ stage }}'
        )
        / (
            count(*) filter (where catalogue.journey_stage = '{{ stage }}')
            + {{ shrink['ratings'] }}
        ) as {{ adapter.quote('rating_' ~ stage ~ '_shrunk') }},
        {%- endfor %}
        max(touchpoint_ratings.rated_on) as last_rated_on
    from base
    inner join touchpoint_ratings
        on
            base.customer_id = touchpoint_ratings.customer_id
            and base.observation_date >= touchpoint_ratings.rated_on
            and base.data_start_date <= touchpoint_ratings.rated_on
    left join catalogue
        on touchpoint_ratings.touchpoint_code = catalogue.touchpoint_code
    left join stage_means
        on
            base.observation_date = stage_means.observation_date
            and catalogue.journey_stage = stage_means.journey_stage
    group by base.observation_date, base.customer_id

),

-- renewal intention against satisfaction, each scaled to 0-1 by its range
renewal_gaps as (

    select
        responses.customer_id,
        responses.response_date,
        (responses.likelihood_to_renew - {{ ltr_range[0] }}) * 1.0
        / ({{ ltr_range[1] }} - {{ ltr_range[0] }})
        - (responses.overall_satisfaction - {{ os_range[0] }}) * 1.0
        / ({{ os_range[1] }} - {{ os_range[0] }}) as renewal_gap
    from responses
    where
        responses.likelihood_to_renew is not null
        and responses.overall_satisfaction is not null

),

renewal_gap_daily as (

    select
        response_date,
        sum(renewal_gap) as gap_sum,
        count(*) as n_gaps
    from renewal_gaps
    group by response_date

),

renewal_gap_means as (

    select
        observation_dates.observation_date,
        sum(renewal_gap_daily.gap_sum) / sum(renewal_gap_daily.n_gaps) as mean_gap
    from observation_dates
    inner join renewal_gap_daily
        on
            observation_dates.observation_date >= renewal_gap_daily.response_date
            and observation_dates.data_start_date <= renewal_gap_daily.response_date
    group by observation_dates.observation_date

),

renewal_gap_features as (

    select
        base.observation_date,
        base.customer_id,
        sum(renewal_gaps.renewal_gap - renewal_gap_means.mean_gap)
        / (count(*) + {{ shrink['renewal_intention'] }}) as renewal_gap_shrunk
    from base
    inner join renewal_gaps
        on
            base.customer_id = renewal_gaps.customer_id
            and base.observation_date >= renewal_gaps.response_date
            and base.data_start_date <= renewal_gaps.response_date
    inner join renewal_gap_means
        on base.observation_date = renewal_gap_means.observation_date
    group by base.observation_date, base.customer_id

),

-- the share of contacts left unresolved across all customers up to each date
unresolved_daily as (

    select
        occurred_on,
        count(*) filter (where not is_resolved) as n_unresolved,
        count(*) as n_contacts
    from interactions
    group by occurred_on

),

unresolved_means as (

    select
        observation_dates.observation_date,
        sum(unresolved_daily.n_unresolved) * 1.0 / sum(unresolved_daily.n_contacts)
            as unresolved_share
    from observation_dates
    inner join unresolved_daily
        on
            observation_dates.observation_date >= unresolved_daily.occurred_on
            and observation_dates.data_start_date <= unresolved_daily.occurred_on
    group by observation_dates.observation_date

),

response_features as (

    select
        base.observation_date,
        base.customer_id,
        count(*) as n_answers,
        min(responses.response_date) as first_answer_on,
        max(responses.response_date) as last_answer_on,
        (max(responses.response_date) - min(responses.response_date)) * 1.0
        / nullif(count(*) - 1, 0) as usual_interval,
        {{ latest_value('responses.nps', 'responses.responded_at') }} as last_nps,
        avg(responses.likelihood_to_renew) as avg_likelihood_to_renew,
        {{ latest_value('responses.overall_satisfaction', 'responses.responded_at') }}
            as last_overall_satisfaction,
        avg(responses.overall_satisfaction) as avg_overall_satisfaction,
        avg(
            (responses.likelihood_to_renew - {{ ltr_range[0] }}) * 1.0
            / ({{ ltr_range[1] }} - {{ ltr_range[0] }})
            - (responses.overall_satisfaction - {{ os_range[0] }}) * 1.0
            / ({{ os_range[1] }} - {{ os_range[0] }})
        ) as avg_renewal_vs_satisfaction
    from base
    inner join responses
        on
            base.customer_id = responses.customer_id
            and base.observation_date >= responses.response_date
            and base.data_start_date <= responses.response_date
    group by base.observation_date, base.customer_id

),

-- relationship answers in 180 days, newest first (satisfaction_falling)
relationship_history as (

    select
        base.observation_date,
        base.customer_id,
        responses.overall_satisfaction,
        responses.responded_at,
        row_number() over (
            partition by base.observation_date, base.customer_id
            order by responses.responded_at desc, responses.response_id desc
        ) as recency_rank,
        count(*) over (partition by base.observation_date, base.customer_id) as n_answers_180d
    from base
    inner join responses
        on
            base.customer_id = responses.customer_id
            and base.observation_date >= responses.response_date
            and responses.response_date > base.observation_date - 180
            and responses.survey_type = 'relationship'
            and responses.overall_satisfaction is not null

),

satisfaction_trend as (

    select
        observation_date,
        customer_id,
        max(overall_satisfaction) filter (where recency_rank = 1) as last_score,
        max(overall_satisfaction) filter (where recency_rank = 2) as previous_score,
        max(n_answers_180d) as n_answers_180d,
        regr_slope(overall_satisfaction, extract(epoch from responded_at) / (86400.0 * 30))
            as slope_per_30d
    from relationship_history
    group by observation_date, customer_id

),

-- invitations old enough to have been answered by the observation date
invitation_history as (

    select
        base.observation_date,
        base.customer_id,
        invitations.sent_on,
        coalesce(cast(invitations.answered_at as date) <= base.observation_date, false)
            as is_answered
    from base
    inner join invitations
        on
            base.customer_id = invitations.customer_id
            and invitations.sent_on <= base.observation_date - {{ grace_days }}
            and base.data_start_date <= invitations.sent_on

),

invitation_features as (

    select
        invitation_history.observation_date,
        invitation_history.customer_id,
        count(*) as n_invitations,
        count(*) filter (where invitation_history.is_answered) as n_answered,
        max(invitation_history.sent_on) as last_invited_on
    from invitation_history
    group by invitation_history.observation_date, invitation_history.customer_id

),

-- the answering habit while the customer still answered: invitations sent up to the
-- last answer (Laplace-smoothed, so one answered invitation is not a certain habit)
answer_habit as (

    select
        invitation_history.observation_date,
        invitation_history.customer_id,
        (count(*) filter (where invitation_history.is_answered) + 1.0) / (count(*) + 2.0)
            as habit_answer_rate
    from invitation_history
    inner join response_features
        on
            invitation_history.observation_date = response_features.observation_date
            and invitation_history.customer_id = response_features.customer_id
    where invitation_history.sent_on <= response_features.last_answer_on
    group by invitation_history.observation_date, invitation_history.customer_id

),

unanswered_since_last_answer as (

    select
        invitation_history.observation_date,
        invitation_history.customer_id,
        count(*) as n_unanswered_since_last_answer
    from invitation_history
    left join response_features
        on
            invitation_history.observation_date = response_features.observation_date
            and invitation_history.customer_id = response_features.customer_id
    where
        not invitation_history.is_answered
        and invitation_history.sent_on > coalesce(response_features.last_answer_on, date '0001-01-01')
    group by invitation_history.observation_date, invitation_history.customer_id

),

final as (

    select
        cast(base.customer_id || '|' || base.observation_date as text) as observation_id,
        cast(base.customer_id as text) as customer_id,
        cast(base.observation_date as date) as observation_date,
        cast(base.data_start_date as date) as data_start_date,
        cast(base.observed_window_days as integer) as observed_window_days,
        cast(base.signup_date as date) as signup_date,
        cast(greatest(base.observation_date - base.signup_date, 0) as integer) as tenure_days,
        cast(base.churned_on as date) as churned_on,
        cast(base.region as text) as region,
        cast(base.segment as text) as segment,
        cast(base.plan as text) as plan,
        cast(base.monthly_value as double precision) as monthly_value,
        cast(
            ln(nullif(base.monthly_value, 0) / nullif(value_before.monthly_value_before, 0))
            as double precision
        ) as value_change_log,
        -- the renewal date known on the observation date (null once it has passed
        -- without a newer version: the next term is not known yet)
        cast(
            case
                when base.renewal_date >= base.observation_date
                    then base.renewal_date - base.observation_date
            end as integer
        ) as days_to_renewal,
        cast(base.subscription_known_on as date) as subscription_known_on,
        -- unresolved contacts beyond everyone's share, shrunk by the number of contacts
        cast(
            (
                coalesce(interaction_features.n_unresolved_history, 0)
                - coalesce(interaction_features.n_interactions_history, 0)
                * unresolved_means.unresolved_share
            )
            / (
                coalesce(interaction_features.n_interactions_history, 0)
                + {{ shrink['unresolved'] }}
            ) as double precision
        ) as unresolved_excess_shrunk,
        -- contact rates per 90 observed days (null: no observed day in the window)
        cast(
            coalesce(interaction_features.n_interactions, 0) * 90.0
            / nullif(base.observed_window_days, 0) as double precision
        ) as interactions_per_90d,
        cast(
            coalesce(interaction_features.n_unresolved, 0) * 90.0
            / nullif(base.observed_window_days, 0) as double precision
        ) as unresolved_per_90d,
        cast(
            coalesce(interaction_features.n_repeat_contacts, 0) * 90.0
            / nullif(base.observed_window_days, 0) as double precision
        ) as repeat_contacts_per_90d,
        cast(interaction_features.avg_wait_seconds / 60.0 as double precision) as avg_wait_minutes,
        -- the same over all observed history: a customer's lasting propensity
        cast(
            coalesce(interaction_features.n_interactions_history, 0) * 90.0
            / nullif(base.observed_history_days, 0) as double precision
        ) as interactions_per_90d_history,
        cast(
            coalesce(interaction_features.n_unresolved_history, 0) * 90.0
            / nullif(base.observed_history_days, 0) as double precision
        ) as unresolved_per_90d_history,
        -- share of contacts left unresolved (smoothed towards none for few contacts)
        cast(
            coalesce(interaction_features.n_unresolved_history, 0) * 1.0
            / (coalesce(interaction_features.n_interactions_history, 0) + 2.0)
            as double precision
        ) as unresolved_share_history,
        -- survey habit and silence against it
        cast(coalesce(invitation_features.n_invitations, 0) as integer) as n_invitations,
        cast(
            invitation_features.n_answered * 1.0 / nullif(invitation_features.n_invitations, 0)
            as double precision
        ) as answer_rate,
        cast(base.observation_date - response_features.last_answer_on as integer)
            as days_since_last_answer,
        cast(response_features.usual_interval as double precision) as usual_answer_interval_days,
        cast(
            (base.observation_date - response_features.last_answer_on)
            / nullif(response_features.usual_interval, 0) as double precision
        ) as silence_vs_habit,
        cast(
            coalesce(unanswered_since_last_answer.n_unanswered_since_last_answer, 0)
            as integer
        ) as n_unanswered_since_last_answer,
        -- answers that the customer's own habit says should have come, and did not
        cast(
            coalesce(unanswered_since_last_answer.n_unanswered_since_last_answer, 0)
            * invitation_features.n_answered * 1.0 / nullif(invitation_features.n_invitations, 0)
            as double precision
        ) as missed_answers_vs_habit,
        cast(answer_habit.habit_answer_rate as double precision) as habit_answer_rate,
        -- how improbable the unanswered run is for this customer's own habit:
        -- -ln P(n unanswered in a row | habit) (0 before any answer: no habit to break)
        cast(
            coalesce(
                -coalesce(unanswered_since_last_answer.n_unanswered_since_last_answer, 0)
                * ln(1 - answer_habit.habit_answer_rate),
                0
            ) as double precision
        ) as silence_surprise,
        -- ratings against the customer's own earlier ratings
        rating_features.rating_recent,
        cast(rating_features.rating_recent - rating_features.rating_earlier as double precision)
            as rating_change,
        {%- for stage in rating_stages %}
        rating_features.{{ adapter.quote('rating_' ~ stage) }},
        cast(
            rating_features.{{ adapter.quote('rating_' ~ stage ~ '_vs_own') }}
            as double precision
        ) as {{ adapter.quote('rating_' ~ stage ~ '_vs_own') }},
        cast(
            coalesce(rating_features.{{ adapter.quote('rating_' ~ stage ~ '_shrunk') }}, 0)
            as double precision
        ) as {{ adapter.quote('rating_' ~ stage ~ '_shrunk') }},
        {%- endfor %}
        cast(response_features.last_nps as double precision) as last_nps,
        cast(response_features.avg_likelihood_to_renew as double precision)
            as avg_likelihood_to_renew,
        cast(response_features.avg_overall_satisfaction as double precision)
            as avg_overall_satisfaction,
        -- renewal intention against the customer's own satisfaction in the same answers
        cast(response_features.avg_renewal_vs_satisfaction as double precision)
            as renewal_vs_satisfaction,
        cast(coalesce(renewal_gap_features.renewal_gap_shrunk, 0) as double precision)
            as renewal_gap_shrunk,
        cast(
            response_features.last_overall_satisfaction
            - response_features.avg_overall_satisfaction as double precision
        ) as satisfaction_vs_own_average,
        -- early-warning flags as they stood on the observation date (their lift is measured)
        -- a regular responder, quiet for longer than usual
        coalesce(
            invitation_features.n_answered * 1.0 / nullif(invitation_features.n_invitations, 0)
            >= {{ var('warning_silent_min_answer_rate') }}
            and (base.observation_date - response_features.last_answer_on)
            >= {{ var('warning_silent_vs_habit') }} * response_features.usual_interval
            and unanswered_since_last_answer.n_unanswered_since_last_answer >= 1,
            false
        ) as flag_silent_responder,
        coalesce(response_features.last_nps <= 6, false) as flag_detractor,
        coalesce(
            (
                satisfaction_trend.slope_per_30d <= {{ var('warning_slope_per_30d') }}
                and satisfaction_trend.n_answers_180d >= 3
                and satisfaction_trend.last_score < satisfaction_trend.previous_score
            )
            or satisfaction_trend.previous_score - satisfaction_trend.last_score
            >= {{ var('warning_sudden_drop') }},
            false
        ) as flag_satisfaction_falling,
        -- the latest event date any feature used: never after observation_date
        cast(greatest(
            base.subscription_start_date,
            base.subscription_known_on,
            interaction_features.last_interaction_on,
            rating_features.last_rated_on,
            response_features.last_answer_on,
            invitation_features.last_invited_on
        ) as date) as features_as_of
    from base
    left join value_before
        on
            base.observation_date = value_before.observation_date
            and base.customer_id = value_before.customer_id
    left join interaction_features
        on
            base.observation_date = interaction_features.observation_date
            and base.customer_id = interaction_features.customer_id
    left join rating_features
        on
            base.observation_date = rating_features.observation_date
            and base.customer_id = rating_features.customer_id
    left join response_features
        on
            base.observation_date = response_features.observation_date
            and base.customer_id = response_features.customer_id
    left join invitation_features
        on
            base.observation_date = invitation_features.observation_date
            and base.customer_id = invitation_features.customer_id
    left join satisfaction_trend
        on
            base.observation_date = satisfaction_trend.observation_date
            and base.customer_id = satisfaction_trend.customer_id
    left join unresolved_means
        on base.observation_date = unresolved_means.observation_date
    left join renewal_gap_features
        on
            base.observation_date = renewal_gap_features.observation_date
            and base.customer_id = renewal_gap_features.customer_id
    left join answer_habit
        on
            base.observation_date = answer_habit.observation_date
            and base.customer_id = answer_habit.customer_id
    left join unanswered_since_last_answer
        on
            base.observation_date = unanswered_since_last_answer.observation_date
            and base.customer_id = unanswered_since_last_answer.customer_id

)

select * from final
