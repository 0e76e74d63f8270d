-- What the churn observations are made of, kept between nights
-- (macros/churn_observation_states.sql): one row per earlier observation date and
-- sampled customer, and one per customer active on run_date (is_current, no date: it is
-- the run date whenever the row is read, int_churn_observations). Features use only
-- events dated up to the observation date, over windows clipped to the loaded data. A
-- row holds no date arithmetic against the observation date and no everyone's means:
-- int_churn_observations applies both, so a kept row stays right as the nights pass
-- until one of its customer's events enters or leaves a window.
{{ config(**churn_states_incremental()) }}
{%- set incremental = churn_states_can_increment() %}
{#- an incremental build reads the events of the customers it computes (a night's
    tenth of the base), not every customer's: without the filter each event table was
    hashed or sorted whole to join the few customers computed -#}
{%- set only_computed = 'and @ in (select base_customers.customer_id from base_customers)'
    if incremental else '' %}
{%- set window_days = var('churn_feature_window_days') %}
{%- set grace_days = var('survey_answer_grace_days') %}
{%- set rating_stages = var('churn_rating_stages') %}
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

    {{ churn_observation_dates() }}

),

-- each subscription running on each observation date as the warehouse knew it then:
-- never a version extracted later. Read by the sample's count and by the rows.
known_on_date as not materialized (

    {{ churn_known_on_date() }}

),

-- earlier dates of a large base are sampled by whole customers (a hash of the id, the
-- same one the churn stage samples by), each date on its own count; run_date's rows,
-- which are scored, are always complete. Whole customers need no weights. An
-- incremental build reads the counts its pre-hook took.
history_sample as (

    {%- if incremental %}
    select * from {{ churn_states_temp('history_buckets') }}
    {%- else %}
    {{ churn_history_buckets() }}
    {%- endif %}

),

{%- if incremental %}

-- the earlier dates with rows kept: only the touched customers' rows are computed there
kept_dates as (

    select history_sample.observation_date
    from history_sample
    where exists (
        select 1 from {{ this }} as kept
        where kept.observation_date = history_sample.observation_date
    )

),
{%- endif %}

-- the subscription running on each observation date (the latest started if several),
-- for the (date, customer) pairs this build computes
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
        known_on_date.{{ adapter.quote(renewal_column) }} as renewal_date,
        {%- else %}
        cast(null as date) as renewal_date,
        {%- endif %}
        history_sample.buckets as sample_buckets
    from known_on_date
    left join history_sample
        on known_on_date.observation_date = history_sample.observation_date
    where
        {% if incremental -%}
        -- implied by the conditions below (the moved customers include the touched
        -- ones), and read before the join: the subscriptions of the customers and dates
        -- computed, not of every customer on every date, are sorted
        (
            known_on_date.customer_id in (
                select moved.customer_id from {{ churn_states_temp('moved_customers') }} as moved
            )
            or known_on_date.observation_date not in (
                select kept_dates.observation_date from kept_dates
            )
        )
        and
        {% endif -%}
        (
            (
                known_on_date.observation_date = {{ run_date() }}
                {%- if incremental %}
                and known_on_date.customer_id in (
                    select moved.customer_id
                    from {{ churn_states_temp('moved_customers') }} as moved
                )
                {%- endif %}
            )
            or (
                known_on_date.observation_date < {{ run_date() }}
                and (hashtext(known_on_date.customer_id) & 1023) < history_sample.buckets
                {%- if incremental %}
                and (
                    known_on_date.customer_id in (
                        select touched.customer_id from {{ customer_touched_relation() }} as touched
                    )
                    or known_on_date.observation_date not in (
                        select kept_dates.observation_date from kept_dates
                    )
                )
                {%- endif %}
            )
        )
    order by
        known_on_date.observation_date asc,
        known_on_date.customer_id asc,
        known_on_date.start_date desc,
        known_on_date.subscription_id desc

),

-- the value one window earlier (the value trend), for the same pairs
value_before as (

    select distinct on (running.observation_date, running.customer_id)
        running.observation_date,
        running.customer_id,
        subscription_versions.monthly_value as monthly_value_before
    from running
    inner join subscription_versions
        on
            running.customer_id = subscription_versions.customer_id
            and subscription_versions.known_from <= running.observation_date - {{ window_days }}
            and coalesce(subscription_versions.known_until, date '9999-12-31')
            > running.observation_date - {{ window_days }}
            and subscription_versions.start_date <= running.observation_date - {{ window_days }}
            and coalesce(subscription_versions.end_date, date '9999-12-31')
            > running.observation_date - {{ window_days }}
    order by
        running.observation_date asc,
        running.customer_id asc,
        subscription_versions.start_date desc,
        subscription_versions.subscription_id desc

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
        running.sample_buckets,
        coalesce(customer_history.region, 'unknown') as region,
        coalesce(customer_history.segment, 'unknown') as segment,
        least(
            coalesce(customer_history.signup_date, rolled_up.first_start_date),
            rolled_up.first_start_date
        ) as signup_date,
        rolled_up.churned_on
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

{%- if incremental %}

-- the customers this build computes: only their events are read below
base_customers as (

    select distinct base.customer_id from base

),
{%- endif %}

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
            {{ only_computed | replace('@', 'interactions.customer_id') }}
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
    where
        responses.csat is not null and responses.touchpoint_code is not null
    {% if incremental -%}
        and responses.customer_id in (select base_customers.customer_id from base_customers)
    {%- endif %}

    union all

    select
        item_ratings.customer_id,
        item_ratings.touchpoint_code,
        cast(item_ratings.responded_at as date) as rated_on,
        cast(item_ratings.rating as double precision) as rating
    from item_ratings
    {%- if incremental %}
    where item_ratings.customer_id in (select base_customers.customer_id from base_customers)
    {%- endif %}

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
        -- the stage's ratings summed and counted: int_churn_observations measures them
        -- against everyone's mean there on the date (the shrunk feature)
        sum(touchpoint_ratings.rating) filter (
            where catalogue.journey_stage = '{{ stage }}'
        ) as {{ adapter.quote('rating_' ~ stage ~ '_sum') }},
        count(*) filter (
            where catalogue.journey_stage = '{{ stage }}'
        ) as {{ adapter.quote('n_ratings_' ~ stage) }},
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
    {% if incremental -%}
        and responses.customer_id in (select base_customers.customer_id from base_customers)
    {%- endif %}

),

renewal_gap_features as (

    select
        base.observation_date,
        base.customer_id,
        sum(renewal_gaps.renewal_gap) as renewal_gap_sum,
        count(*) as n_renewal_gaps
    from base
    inner join renewal_gaps
        on
            base.customer_id = renewal_gaps.customer_id
            and base.observation_date >= renewal_gaps.response_date
            and base.data_start_date <= renewal_gaps.response_date
    group by base.observation_date, base.customer_id

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
            {{ only_computed | replace('@', 'responses.customer_id') }}
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
            {{ only_computed | replace('@', 'responses.customer_id') }}
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
            {{ only_computed | replace('@', 'invitations.customer_id') }}
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
        cast(
            base.customer_id || '|' || case
                when base.observation_date = {{ run_date() }} then 'current'
                else cast(base.observation_date as text)
            end as text
        ) as state_id,
        cast(base.customer_id as text) as customer_id,
        cast(base.observation_date = {{ run_date() }} as boolean) as is_current,
        -- earlier dates only: the run date's row is dated when it is read
        cast(
            case when base.observation_date < {{ run_date() }} then base.observation_date end
            as date
        ) as observation_date,
        cast(base.data_start_date as date) as data_start_date,
        cast(base.sample_buckets as integer) as sample_buckets,
        cast(base.signup_date as date) as signup_date,
        cast(base.churned_on as date) as churned_on,
        cast(base.region as text) as region,
        cast(base.segment as text) as segment,
        cast(base.plan as text) as plan,
        cast(base.monthly_value as double precision) as monthly_value,
        cast(
            ln(nullif(base.monthly_value, 0) / nullif(value_before.monthly_value_before, 0))
            as double precision
        ) as value_change_log,
        cast(base.renewal_date as date) as renewal_date,
        cast(base.subscription_known_on as date) as subscription_known_on,
        -- contacts: in the window and over all loaded history up to the date
        cast(coalesce(interaction_features.n_interactions, 0) as integer) as n_interactions,
        cast(coalesce(interaction_features.n_unresolved, 0) as integer) as n_unresolved,
        cast(coalesce(interaction_features.n_repeat_contacts, 0) as integer) as n_repeat_contacts,
        cast(interaction_features.avg_wait_seconds as double precision) as avg_wait_seconds,
        cast(coalesce(interaction_features.n_interactions_history, 0) as integer)
            as n_interactions_history,
        cast(coalesce(interaction_features.n_unresolved_history, 0) as integer)
            as n_unresolved_history,
        -- survey habit
        cast(coalesce(invitation_features.n_invitations, 0) as integer) as n_invitations,
        cast(coalesce(invitation_features.n_answered, 0) as integer) as n_answered,
        cast(response_features.last_answer_on as date) as last_answer_on,
        cast(response_features.usual_interval as double precision) as usual_answer_interval_days,
        cast(
            coalesce(unanswered_since_last_answer.n_unanswered_since_last_answer, 0)
            as integer
        ) as n_unanswered_since_last_answer,
        cast(answer_habit.habit_answer_rate as double precision) as habit_answer_rate,
        -- ratings
        cast(rating_features.rating_recent as double precision) as rating_recent,
        cast(rating_features.rating_earlier as double precision) as rating_earlier,
        {%- for stage in rating_stages %}
        cast(rating_features.{{ adapter.quote('rating_' ~ stage) }} as double precision)
            as {{ adapter.quote('rating_' ~ stage) }},
        cast(
            rating_features.{{ adapter.quote('rating_' ~ stage ~ '_vs_own') }}
            as double precision
        ) as {{ adapter.quote('rating_' ~ stage ~ '_vs_own') }},
        cast(
            coalesce(rating_features.{{ adapter.quote('rating_' ~ stage ~ '_sum') }}, 0)
            as double precision
        ) as {{ adapter.quote('rating_' ~ stage ~ '_sum') }},
        cast(
            coalesce(rating_features.{{ adapter.quote('n_ratings_' ~ stage) }}, 0) as integer
        ) as {{ adapter.quote('n_ratings_' ~ stage) }},
        {%- endfor %}
        -- answers
        cast(response_features.last_nps as double precision) as last_nps,
        cast(response_features.avg_likelihood_to_renew as double precision)
            as avg_likelihood_to_renew,
        cast(response_features.avg_overall_satisfaction as double precision)
            as avg_overall_satisfaction,
        cast(response_features.avg_renewal_vs_satisfaction as double precision)
            as renewal_vs_satisfaction,
        cast(coalesce(renewal_gap_features.renewal_gap_sum, 0) as double precision)
            as renewal_gap_sum,
        cast(coalesce(renewal_gap_features.n_renewal_gaps, 0) as integer) as n_renewal_gaps,
        cast(
            response_features.last_overall_satisfaction
            - response_features.avg_overall_satisfaction as double precision
        ) as satisfaction_vs_own_average,
        -- early-warning flags that do not move with the calendar by themselves
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
        ) as date) as features_as_of,
        cast(now() as timestamptz) as built_at
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
