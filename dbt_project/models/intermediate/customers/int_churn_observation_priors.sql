-- Everyone's means up to each churn observation date (the run date and the earlier
-- dates of int_churn_observation_states), that a customer's few ratings, contacts and
-- answers are shrunk towards in int_churn_observations: per journey stage the mean
-- rating, the share of contacts left unresolved, the mean renewal-vs-satisfaction gap.
-- One row per date; the events are summed per day before they meet the dates.
{%- set rating_stages = var('churn_rating_stages') %}
{%- set ltr_range = var('domain_scales')['responses.likelihood_to_renew'] %}
{%- set os_range = var('domain_scales')['responses.overall_satisfaction'] %}
with

all_subscriptions as (

    select * from {{ ref('stg_crm__subscriptions') }}

),

interactions as (

    select * from {{ ref('int_interactions_enriched') }}

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

-- transactional CSAT and relationship item ratings share one scale
touchpoint_ratings as (

    select
        responses.touchpoint_code,
        responses.response_date as rated_on,
        cast(responses.csat as double precision) as rating
    from responses
    where responses.csat is not null and responses.touchpoint_code is not null

    union all

    select
        item_ratings.touchpoint_code,
        cast(item_ratings.responded_at as date) as rated_on,
        cast(item_ratings.rating as double precision) as rating
    from item_ratings

),

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
        {%- for stage in rating_stages %}
        sum(stage_daily.rating_sum) filter (
            where stage_daily.journey_stage = '{{ stage }}'
        ) * 1.0 / nullif(sum(stage_daily.n_ratings) filter (
            where stage_daily.journey_stage = '{{ stage }}'
        ), 0) as {{ adapter.quote('stage_mean_' ~ stage) }},
        {%- endfor %}
        observation_dates.observation_date
    from observation_dates
    inner join stage_daily
        on
            observation_dates.observation_date >= stage_daily.rated_on
            and observation_dates.data_start_date <= stage_daily.rated_on
    group by observation_dates.observation_date

),

renewal_gap_daily as (

    select
        responses.response_date,
        sum(
            (responses.likelihood_to_renew - {{ ltr_range[0] }}) * 1.0
            / ({{ ltr_range[1] }} - {{ ltr_range[0] }})
            - (responses.overall_satisfaction - {{ os_range[0] }}) * 1.0
            / ({{ os_range[1] }} - {{ os_range[0] }})
        ) as gap_sum,
        count(*) as n_gaps
    from responses
    where
        responses.likelihood_to_renew is not null
        and responses.overall_satisfaction is not null
    group by responses.response_date

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

final as (

    select
        cast(observation_dates.observation_date as date) as observation_date,
        {%- for stage in rating_stages %}
        cast(stage_means.{{ adapter.quote('stage_mean_' ~ stage) }} as double precision)
            as {{ adapter.quote('stage_mean_' ~ stage) }},
        {%- endfor %}
        cast(unresolved_means.unresolved_share as double precision) as unresolved_share,
        cast(renewal_gap_means.mean_gap as double precision) as mean_renewal_gap
    from observation_dates
    left join stage_means
        on observation_dates.observation_date = stage_means.observation_date
    left join unresolved_means
        on observation_dates.observation_date = unresolved_means.observation_date
    left join renewal_gap_means
        on observation_dates.observation_date = renewal_gap_means.observation_date

)

select * from final
