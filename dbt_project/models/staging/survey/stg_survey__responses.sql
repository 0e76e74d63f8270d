{{ config(**staging_incremental('survey', 'responses', 'response_id', 'responded_at')) }}
-- depends_on: {{ source('ingestion', 'load_batches') }}
-- The latest version of each survey response given up to run_date.
with

source as (

    select * from {{ source('survey', 'responses') }}

),

latest as (

    select distinct on (response_id) *
    from source
    where {{ as_of_run_date('responded_at') }}
    {{ staging_only_touched('response_id') }}
    order by response_id, {{ latest_first() }}

),

renamed as (

    select
        -- ids
        cast(response_id as text) as response_id,

        -- foreign keys
        cast(invitation_id as text) as invitation_id,
        cast(customer_id as text) as customer_id,
        cast(lower(nullif(trim(touchpoint_code), '')) as text) as touchpoint_code,

        -- attributes
        cast(lower(trim(survey_type)) as text) as survey_type,
        cast(nullif(trim(comment), '') as text) as comment,
        cast(lower(nullif(trim(comment_language), '')) as text) as comment_language,

        -- numerics (scores)
        cast(nps as integer) as nps,
        cast(csat as integer) as csat,
        cast(ces as integer) as ces,
        cast(overall_satisfaction as integer) as overall_satisfaction,
        cast(likelihood_to_renew as integer) as likelihood_to_renew,

        -- dates and timestamps
        cast(invited_at as timestamp) as invited_at,
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
