{{ config(**staging_incremental('survey', 'invitations', 'invitation_id', 'sent_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each survey invitation sent up to run_date.
with

source as (

    select * from {{ source('survey', 'invitations') }}

),

latest as (

    select distinct on (invitation_id) *
    from source
    where {{ as_of_run_date('sent_at') }}
    {{ staging_only_touched('invitation_id') }}
    order by invitation_id, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(invitation_id as text) as invitation_id,

        -- foreign keys
        cast(customer_id as text) as customer_id,
        cast(nullif(trim(interaction_id), '') as text) as interaction_id,
        cast(lower(nullif(trim(touchpoint_code), '')) as text) as touchpoint_code,

        -- attributes
        cast(lower(trim(survey_type)) as text) as survey_type,

        -- dates and timestamps
        cast(sent_at as timestamp) as sent_at,

        -- lineage
        _batch_id as batch_id,
        _extract_date as extract_date,
        _loaded_at as loaded_at,
        -- when this row was (re)built (macros/incremental_staging.sql)
        cast(now() as timestamptz) as built_at

    from latest

)

select * from renamed
