{{ config(**staging_incremental('crm', 'customers', 'customer_id', 'updated_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- Every distinct version of each customer's attributes seen in the extract
-- batches up to run_date (no personal data): the input of the type-2 history.
-- A version is identified by (customer_id, updated_at); when the same version
-- arrives in several batches, the latest batch wins.
with

source as (

    select * from {{ source('crm', 'customers') }}

),

latest as (

    select distinct on (customer_id, updated_at) *
    from source
    where {{ as_of_run_date('updated_at') }}
    {{ staging_only_touched('customer_id') }}
    order by customer_id, updated_at, {{ latest_first() }}

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
        -- columns of the export the contract does not name (column mapping)
        cast(attributes as jsonb) as attributes,

        -- dates and timestamps
        cast(signup_date as date) as signup_date,
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
