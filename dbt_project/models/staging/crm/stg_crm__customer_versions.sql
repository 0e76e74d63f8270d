-- Every distinct version of each customer's attributes seen in the extract
-- batches up to run_date (no personal data): the input of the type-2 history.
-- A version is identified by (customer_id, updated_at); when the same version
-- arrives in several batches, the latest batch wins.
with

source as (

    select * from {{ source('crm', 'customers') }}

),

visible as (

    select
        *,
        {{ latest_version_rank('customer_id, updated_at') }} as version_rank
    from source
    where {{ as_of_run_date('updated_at') }}

),

renamed as (

    select
        -- ids
        cast(customer_id as text) as customer_id,

        -- attributes
        cast(lower(trim(region)) as text) as region,
        cast(lower(trim(segment)) as text) as segment,
        cast(lower(trim(plan)) as text) as plan,
        cast(lower(trim(acquisition_channel)) as text) as acquisition_channel,
        cast(marketing_consent as boolean) as marketing_consent,

        -- dates and timestamps
        cast(signup_date as date) as signup_date,
        cast(updated_at as timestamp) as updated_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at

    from visible
    where version_rank = 1

)

select * from renamed
