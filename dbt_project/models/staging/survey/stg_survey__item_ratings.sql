{{ config(**staging_incremental('survey', 'item_ratings', 'response_id', 'responded_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each per-item rating (key: response_id, item_code)
-- given up to run_date.
with

source as (

    select * from {{ source('survey', 'item_ratings') }}

),

latest as (

    select distinct on (response_id, item_code) *
    from source
    where {{ as_of_run_date('responded_at') }}
    {{ staging_only_touched('response_id') }}
    order by response_id, item_code, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(response_id || ':' || lower(trim(item_code)) as text) as item_rating_id,

        -- foreign keys
        cast(response_id as text) as response_id,
        cast(customer_id as text) as customer_id,
        cast(lower(trim(item_code)) as text) as item_code,
        cast(lower(trim(touchpoint_code)) as text) as touchpoint_code,

        -- attributes
        cast(lower(trim(dimension)) as text) as experience_dimension,

        -- numerics
        cast(rating as integer) as rating,

        -- dates and timestamps
        cast(responded_at as timestamp) as responded_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at,
        -- when this row was (re)built (macros/incremental_staging.sql)
        cast(now() as timestamptz) as built_at

    from latest

)

select * from renamed
