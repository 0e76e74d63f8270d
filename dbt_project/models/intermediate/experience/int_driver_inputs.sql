-- Input of the driver-importance step (Python): one row per relationship-survey
-- item rating up to run_date, with every integer answer of the response a goal
-- may name (cxloop.yml `goals:` picks the columns and their scales) and the
-- customer's segment and region when answering, plus one column per further
-- segmentation dimension of var segment_by (cxloop.yml domain.segment_by: a
-- customer column, or attributes.<key> of the customer's extra columns), named
-- as the dimension and taken from the customer's version when answering.
-- Kept by key (macros/incremental_by_key.sql): a nightly rebuilds the rows of the
-- responses whose item ratings or answers changed (and, with further dimensions, whose
-- customer's history changed).
{%- set extra_dimensions = var('segment_by', ['segment'])
    | reject('in', ['segment', 'region']) | list %}
{%- set links = [
    ['stg_survey__item_ratings', 'response_id', 'response_id'],
    ['int_responses_enriched', 'response_id', 'response_id'],
] %}
{%- if extra_dimensions %}
{%- do links.append(['stg_crm__customer_versions', 'customer_id', 'customer_id']) %}
{%- endif %}
{{ config(**key_incremental('response_id', links)) }}
with

item_ratings as (

    -- an item marked "not applicable" (empty rating) says nothing about its driver weight
    select * from {{ ref('stg_survey__item_ratings') }}
    where rating is not null {{ key_only_touched(clause='and') if not extra_dimensions }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

{%- if extra_dimensions %}

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),
{%- endif %}

relationship_responses as (

    select * from responses
    where survey_type = 'relationship'

),

rated as (

    select
        item_ratings.response_id,
        relationship_responses.customer_id,
        relationship_responses.segment,
        relationship_responses.region,
        {%- for dimension in extra_dimensions %}
        {%- if dimension.startswith('attributes.') %}
        cast(
            customer_history.attributes ->> {{ dbt.string_literal(dimension[11:]) }} as text
        ) as {{ adapter.quote(dimension) }},
        {%- else %}
        cast(customer_history.{{ adapter.quote(dimension) }} as text) as {{ adapter.quote(dimension) }},
        {%- endif %}
        {%- endfor %}
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
    {%- if extra_dimensions %}
    left join customer_history
        on
            relationship_responses.customer_id = customer_history.customer_id
            and relationship_responses.responded_at < coalesce(customer_history.valid_to, 'infinity')
            and (
                relationship_responses.responded_at >= customer_history.valid_from
                or customer_history.version_number = 1
            )
    {%- endif %}

),

-- the customer link is the response's customer: with further dimensions the rows to
-- rebuild are picked after the join
final as (

    select
        *,
        cast(now() as timestamptz) as built_at
    from rated
    {%- if extra_dimensions %}
    {{ key_only_touched() }}
    {%- endif %}

)

select * from final
