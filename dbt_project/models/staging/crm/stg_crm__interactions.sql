{{ config(**staging_incremental('crm', 'interactions', 'interaction_id', 'occurred_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each service interaction that happened up to run_date.
with

source as (

    select * from {{ source('crm', 'interactions') }}

),

latest as (

    select distinct on (interaction_id) *
    from source
    where {{ as_of_run_date('occurred_at') }}
    {{ staging_only_touched('interaction_id') }}
    order by interaction_id, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(interaction_id as text) as interaction_id,

        -- foreign keys
        cast(customer_id as text) as customer_id,
        cast(lower(trim(touchpoint_code)) as text) as touchpoint_code,

        -- attributes
        cast(lower(trim(channel)) as text) as channel,
        cast(resolved as boolean) as is_resolved,
        cast(first_contact_resolution as boolean) as is_first_contact_resolution,

        -- numerics
        cast(wait_seconds as integer) as wait_seconds,
        cast(handle_seconds as integer) as handle_seconds,

        -- dates and timestamps
        cast(occurred_at as timestamp) as occurred_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at,
        -- when this row was (re)built (macros/incremental_staging.sql)
        cast(now() as timestamptz) as built_at

    from latest

)

select * from renamed
