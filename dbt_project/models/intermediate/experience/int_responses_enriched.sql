{{ config(**key_incremental('response_id', [
    ['stg_survey__responses', 'response_id', 'response_id'],
    ['int_invitations_enriched', 'invitation_id', 'invitation_id'],
    ['stg_crm__customer_versions', 'customer_id', 'customer_id'],
])) }}
-- Survey responses up to run_date with their invitation, the touchpoint and
-- channel they are about, the customer's attributes when answering, and the
-- NPS category. Kept by key (macros/incremental_by_key.sql): a nightly rebuilds the
-- responses whose own row, invitation or customer history changed.
with

responses as (

    select * from {{ ref('stg_survey__responses') }}
    {{ key_only_touched() }}

),

invitations as (

    select * from {{ ref('int_invitations_enriched') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

joined as (

    select
        responses.response_id,
        responses.invitation_id,
        responses.customer_id,
        invitations.interaction_id,
        coalesce(responses.touchpoint_code, invitations.touchpoint_code) as touchpoint_code,
        coalesce(responses.survey_type, invitations.survey_type) as survey_type,
        coalesce(invitations.channel, 'unknown') as channel,
        responses.nps,
        responses.csat,
        responses.ces,
        responses.overall_satisfaction,
        responses.likelihood_to_renew,
        responses.comment,
        responses.comment_language,
        coalesce(invitations.sent_at, responses.invited_at) as invited_at,
        responses.responded_at,
        responses.extract_date,
        responses.loaded_at
    from responses
    left join invitations
        on responses.invitation_id = invitations.invitation_id

),

final as (

    select
        joined.response_id,
        joined.invitation_id,
        joined.customer_id,
        joined.interaction_id,
        joined.touchpoint_code,
        joined.survey_type,
        case
            when joined.touchpoint_code is null then joined.channel
            when joined.channel = 'unknown' then coalesce(catalogue.default_channel, 'unknown')
            else joined.channel
        end as channel,
        coalesce(customer_history.segment, 'unknown') as segment,
        coalesce(customer_history.region, 'unknown') as region,
        catalogue.journey_stage,
        joined.nps,
        case
            when joined.nps >= 9 then 'promoter'
            when joined.nps >= 7 then 'passive'
            when joined.nps >= 0 then 'detractor'
        end as nps_category,
        joined.csat,
        joined.ces,
        joined.overall_satisfaction,
        joined.likelihood_to_renew,
        joined.comment,
        joined.comment_language,
        joined.invited_at,
        joined.responded_at,
        cast(joined.responded_at as date) as response_date,
        joined.extract_date,
        joined.loaded_at,
        cast(now() as timestamptz) as built_at
    from joined
    left join catalogue
        on joined.touchpoint_code = catalogue.touchpoint_code
    left join customer_history
        on
            joined.customer_id = customer_history.customer_id
            and joined.responded_at < coalesce(customer_history.valid_to, 'infinity')
            and (
                joined.responded_at >= customer_history.valid_from
                or customer_history.version_number = 1
            )

)

select * from final
