-- Input of the driver-importance step (Python): one row per relationship-survey
-- item rating up to run_date, with every integer answer of the response a goal
-- may name (cxloop.yml `goals:` picks the columns and their scales) and the
-- customer's segment and region when answering.
with

item_ratings as (

    select * from {{ ref('stg_survey__item_ratings') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

relationship_responses as (

    select * from responses
    where survey_type = 'relationship'

),

final as (

    select
        item_ratings.response_id,
        relationship_responses.customer_id,
        relationship_responses.segment,
        relationship_responses.region,
        relationship_responses.response_date,
        item_ratings.item_code,
        item_ratings.touchpoint_code,
        item_ratings.rating,
        relationship_responses.nps,
        relationship_responses.csat,
        relationship_responses.ces,
        relationship_responses.overall_satisfaction,
        relationship_responses.likelihood_to_renew
    from item_ratings
    inner join relationship_responses
        on item_ratings.response_id = relationship_responses.response_id

)

select * from final
