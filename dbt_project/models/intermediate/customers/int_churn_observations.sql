-- Rows of the churn model's landmark design: one per observation date (run_date, and
-- earlier dates every churn_observation_every_days observed days from the first
-- extract) and customer active on it. Features use only events dated up to the
-- observation date, over windows clipped to the loaded data (rates per 90 observed days;
-- null without observed days). churned_on (known at run_date) is the target, not a
-- feature. The counts come kept from int_churn_observation_states; here they meet the
-- date (the run date's rows are dated run_date) and everyone's means on it
-- (int_churn_observation_priors), every build, for every row.
{%- set window_days = var('churn_feature_window_days') %}
{%- set rating_stages = var('churn_rating_stages') %}
{%- set shrink = var('churn_shrinkage') %}
with

states as (

    select * from {{ ref('int_churn_observation_states') }}

),

priors as (

    select * from {{ ref('int_churn_observation_priors') }}

),

dated as (

    select
        states.*,
        coalesce(states.observation_date, {{ run_date() }}) as observed_on,
        least(
            {{ window_days }},
            coalesce(states.observation_date, {{ run_date() }}) - states.data_start_date + 1
        ) as observed_window_days,
        coalesce(states.observation_date, {{ run_date() }}) - states.data_start_date + 1
            as observed_history_days,
        cast(
            states.n_answered * 1.0 / nullif(states.n_invitations, 0) as double precision
        ) as answer_rate
    from states

),

final as (

    select
        cast(dated.customer_id || '|' || dated.observed_on as text) as observation_id,
        cast(dated.customer_id as text) as customer_id,
        cast(dated.observed_on as date) as observation_date,
        cast(dated.data_start_date as date) as data_start_date,
        cast(dated.observed_window_days as integer) as observed_window_days,
        cast(dated.signup_date as date) as signup_date,
        cast(greatest(dated.observed_on - dated.signup_date, 0) as integer) as tenure_days,
        cast(dated.churned_on as date) as churned_on,
        cast(dated.region as text) as region,
        cast(dated.segment as text) as segment,
        cast(dated.plan as text) as plan,
        cast(dated.monthly_value as double precision) as monthly_value,
        cast(dated.value_change_log as double precision) as value_change_log,
        -- the renewal date known on the observation date (null once it has passed
        -- without a newer version: the next term is not known yet)
        cast(
            case
                when dated.renewal_date >= dated.observed_on
                    then dated.renewal_date - dated.observed_on
            end as integer
        ) as days_to_renewal,
        cast(dated.subscription_known_on as date) as subscription_known_on,
        -- unresolved contacts beyond everyone's share, shrunk by the number of contacts
        cast(
            (dated.n_unresolved_history - dated.n_interactions_history * priors.unresolved_share)
            / (dated.n_interactions_history + {{ shrink['unresolved'] }}) as double precision
        ) as unresolved_excess_shrunk,
        -- contact rates per 90 observed days (null: no observed day in the window)
        cast(
            dated.n_interactions * 90.0 / nullif(dated.observed_window_days, 0)
            as double precision
        ) as interactions_per_90d,
        cast(
            dated.n_unresolved * 90.0 / nullif(dated.observed_window_days, 0)
            as double precision
        ) as unresolved_per_90d,
        cast(
            dated.n_repeat_contacts * 90.0 / nullif(dated.observed_window_days, 0)
            as double precision
        ) as repeat_contacts_per_90d,
        cast(dated.avg_wait_seconds / 60.0 as double precision) as avg_wait_minutes,
        -- the same over all observed history: a customer's lasting propensity
        cast(
            dated.n_interactions_history * 90.0 / nullif(dated.observed_history_days, 0)
            as double precision
        ) as interactions_per_90d_history,
        cast(
            dated.n_unresolved_history * 90.0 / nullif(dated.observed_history_days, 0)
            as double precision
        ) as unresolved_per_90d_history,
        -- share of contacts left unresolved (smoothed towards none for few contacts)
        cast(
            dated.n_unresolved_history * 1.0 / (dated.n_interactions_history + 2.0)
            as double precision
        ) as unresolved_share_history,
        -- survey habit and silence against it
        cast(dated.n_invitations as integer) as n_invitations,
        dated.answer_rate,
        cast(dated.observed_on - dated.last_answer_on as integer) as days_since_last_answer,
        cast(dated.usual_answer_interval_days as double precision) as usual_answer_interval_days,
        cast(
            (dated.observed_on - dated.last_answer_on)
            / nullif(dated.usual_answer_interval_days, 0) as double precision
        ) as silence_vs_habit,
        cast(dated.n_unanswered_since_last_answer as integer) as n_unanswered_since_last_answer,
        -- answers that the customer's own habit says should have come, and did not
        cast(dated.n_unanswered_since_last_answer * dated.answer_rate as double precision)
            as missed_answers_vs_habit,
        cast(dated.habit_answer_rate as double precision) as habit_answer_rate,
        -- how improbable the unanswered run is for this customer's own habit:
        -- -ln P(n unanswered in a row | habit) (0 before any answer: no habit to break)
        cast(
            coalesce(
                -dated.n_unanswered_since_last_answer * ln(1 - dated.habit_answer_rate), 0
            ) as double precision
        ) as silence_surprise,
        -- ratings against the customer's own earlier ratings
        cast(dated.rating_recent as double precision) as rating_recent,
        cast(dated.rating_recent - dated.rating_earlier as double precision) as rating_change,
        {%- for stage in rating_stages %}
        cast(dated.{{ adapter.quote('rating_' ~ stage) }} as double precision)
            as {{ adapter.quote('rating_' ~ stage) }},
        cast(dated.{{ adapter.quote('rating_' ~ stage ~ '_vs_own') }} as double precision)
            as {{ adapter.quote('rating_' ~ stage ~ '_vs_own') }},
        -- the stage's ratings against everyone's mean there, shrunk by how many there are
        -- (an estimate of the customer's lasting experience there, 0 without a rating)
        cast(
            coalesce(
                (
                    dated.{{ adapter.quote('rating_' ~ stage ~ '_sum') }}
                    - dated.{{ adapter.quote('n_ratings_' ~ stage) }}
                    * priors.{{ adapter.quote('stage_mean_' ~ stage) }}
                )
                / (dated.{{ adapter.quote('n_ratings_' ~ stage) }} + {{ shrink['ratings'] }}),
                0
            ) as double precision
        ) as {{ adapter.quote('rating_' ~ stage ~ '_shrunk') }},
        {%- endfor %}
        cast(dated.last_nps as double precision) as last_nps,
        cast(dated.avg_likelihood_to_renew as double precision) as avg_likelihood_to_renew,
        cast(dated.avg_overall_satisfaction as double precision) as avg_overall_satisfaction,
        -- renewal intention against the customer's own satisfaction in the same answers
        cast(dated.renewal_vs_satisfaction as double precision) as renewal_vs_satisfaction,
        -- and against everyone's up to the date, shrunk by the number of answers
        cast(
            coalesce(
                (dated.renewal_gap_sum - dated.n_renewal_gaps * priors.mean_renewal_gap)
                / (dated.n_renewal_gaps + {{ shrink['renewal_intention'] }}),
                0
            ) as double precision
        ) as renewal_gap_shrunk,
        cast(dated.satisfaction_vs_own_average as double precision)
            as satisfaction_vs_own_average,
        -- early-warning flags as they stood on the observation date (their lift is measured)
        -- a regular responder, quiet for longer than usual
        coalesce(
            dated.answer_rate >= {{ var('warning_silent_min_answer_rate') }}
            and (dated.observed_on - dated.last_answer_on)
            >= {{ var('warning_silent_vs_habit') }} * dated.usual_answer_interval_days
            and dated.n_unanswered_since_last_answer >= 1,
            false
        ) as flag_silent_responder,
        dated.flag_detractor,
        dated.flag_satisfaction_falling,
        cast(dated.features_as_of as date) as features_as_of
    from dated
    left join priors
        on dated.observed_on = priors.observation_date

)

select * from final
