{{ config(**staging_incremental('crm', 'orders', 'order_id', 'order_date')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each order placed up to run_date.
with

source as (

    select * from {{ source('crm', 'orders') }}

),

latest as (

    select distinct on (order_id) *
    from source
    where {{ as_of_run_date('order_date') }}
    {{ staging_only_touched('order_id') }}
    order by order_id, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(order_id as text) as order_id,

        -- foreign keys
        cast(customer_id as text) as customer_id,

        -- numerics
        cast(amount as numeric(12, 2)) as amount,

        -- dates and timestamps
        cast(order_date as date) as order_date,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at,
        -- when this row was (re)built (macros/incremental_staging.sql)
        cast(now() as timestamptz) as built_at

    from latest

)

select * from renamed
