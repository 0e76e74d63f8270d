{{ config(**customer_incremental()) }}
-- Relationship-survey item ratings up to run_date, placed like the other
-- touchpoint events of fct_touchpoint_daily: on the day answered, at the item's
-- touchpoint, on the touchpoint's default channel (a relationship survey is not
-- taken on the touchpoint's own channel), in the customer's segment when
-- answering. Lineage (extract_date, loaded_at) drives the fct's incremental
-- rebuilds.
with

item_ratings as (

    select * from {{ ref('stg_survey__item_ratings') }}
    {{ customer_only_touched('customer_id') }}

),

items as (

    select * from {{ ref('survey_items') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}
    {{ customer_only_touched('customer_id') }}

),

placed as (

    select
        item_ratings.item_rating_id,
        item_ratings.response_id,
        item_ratings.customer_id,
        item_ratings.item_code,
        coalesce(item_ratings.touchpoint_code, items.touchpoint_code) as touchpoint_code,
        item_ratings.rating,
        item_ratings.responded_at,
        item_ratings.extract_date,
        item_ratings.loaded_at
    from item_ratings
    left join items
        on item_ratings.item_code = items.item_code

),

final as (

    select
        placed.item_rating_id,
        placed.response_id,
        placed.customer_id,
        placed.item_code,
        placed.touchpoint_code,
        coalesce(catalogue.default_channel, 'unknown') as channel,
        coalesce(customer_history.segment, 'unknown') as segment,
        placed.rating,
        placed.responded_at,
        cast(placed.responded_at as date) as rating_date,
        placed.extract_date,
        placed.loaded_at,
        cast(now() as timestamptz) as built_at
    from placed
    left join catalogue
        on placed.touchpoint_code = catalogue.touchpoint_code
    left join customer_history
        on
            placed.customer_id = customer_history.customer_id
            and placed.responded_at < coalesce(customer_history.valid_to, 'infinity')
            and (
                placed.responded_at >= customer_history.valid_from
                or customer_history.version_number = 1
            )
    where placed.touchpoint_code is not null

)

select * from final
