{{ config(**staging_incremental('crm', 'subscriptions', 'subscription_id', 'updated_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each subscription as of run_date. renewal_date,
-- billing_period and quantity are optional contract columns (null when a file
-- leaves them out); quantity then counts as 1.
with

source as (

    select * from {{ source('crm', 'subscriptions') }}

),

latest as (

    select distinct on (subscription_id) *
    from source
    where {{ as_of_run_date('updated_at') }}
    {{ staging_only_touched('subscription_id') }}
    order by subscription_id, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(subscription_id as text) as subscription_id,

        -- foreign keys
        cast(customer_id as text) as customer_id,

        -- attributes
        cast(lower(trim(plan)) as text) as plan,
        cast(lower(trim(status)) as text) as status,
        cast(nullif(trim(cancel_reason), '') as text) as cancel_reason,
        cast(nullif(lower(trim(billing_period)), '') as text) as billing_period,

        -- numerics (quantity is optional in the extract: absent or empty = 1)
        cast(monthly_value as numeric(12, 2)) as monthly_value,
        cast(coalesce(quantity, 1) as integer) as quantity,
        cast(monthly_value * coalesce(quantity, 1) as numeric(14, 2)) as total_monthly_value,

        -- dates and timestamps
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(renewal_date as date) as renewal_date,
        cast(updated_at as timestamp) as updated_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at,
        -- when this row was (re)built (macros/incremental_staging.sql)
        cast(now() as timestamptz) as built_at

    from latest

)

select * from renamed
