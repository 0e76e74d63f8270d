-- The latest version of each subscription as of run_date.
with

source as (

    select * from {{ source('crm', 'subscriptions') }}

),

latest as (

    select distinct on (subscription_id) *
    from source
    where {{ as_of_run_date('updated_at') }}
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

        -- numerics
        cast(monthly_value as numeric(12, 2)) as monthly_value,

        -- dates and timestamps
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(updated_at as timestamp) as updated_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at

    from latest

)

select * from renamed
