{{ config(**key_incremental('invitation_id', [
    ['stg_survey__invitations', 'invitation_id', 'invitation_id'],
    ['stg_survey__responses', 'invitation_id', 'invitation_id'],
    ['stg_crm__interactions', 'interaction_id', 'interaction_id'],
    ['stg_crm__customer_versions', 'customer_id', 'customer_id'],
])) }}
-- Survey invitations up to run_date with the channel and segment they count
-- under, and whether (and when) they were answered by run_date. Kept by key
-- (macros/incremental_by_key.sql): a nightly rebuilds the invitations whose own row,
-- answers, interaction or customer history changed.
with

invitations as (

    select * from {{ ref('stg_survey__invitations') }}
    {{ key_only_touched() }}

),

interactions as (

    select * from {{ ref('stg_crm__interactions') }}

),

-- The interaction of each invitation that names one, joined apart (an inner join drops
-- the invitations without one): in a left join from invitations, the planner may hash
-- the invitations, and the many without an interaction_id share one hash bucket (a
-- 100k-customer build spent over 10 minutes here instead of seconds).
invitation_interactions as (

    select
        invitations.invitation_id,
        interactions.touchpoint_code,
        interactions.channel
    from invitations
    inner join interactions
        on invitations.interaction_id = interactions.interaction_id

),

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

first_answers as (

    select
        invitation_id,
        min(responded_at) as answered_at,
        count(*) as n_responses,
        max(extract_date) as extract_date,
        max(loaded_at) as loaded_at
    from responses
    {%- if key_can_increment() %}
    where responses.invitation_id in (select invitations.invitation_id from invitations)
    {%- endif %}
    group by invitation_id

),

final as (

    select
        invitations.invitation_id,
        invitations.customer_id,
        invitations.interaction_id,
        coalesce(invitations.touchpoint_code, invitation_interactions.touchpoint_code) as touchpoint_code,
        invitations.survey_type,
        coalesce(
            invitation_interactions.channel,
            catalogue.default_channel,
            'unknown'
        ) as channel,
        coalesce(customer_history.segment, 'unknown') as segment,
        coalesce(customer_history.region, 'unknown') as region,
        invitations.sent_at,
        cast(invitations.sent_at as date) as sent_on,
        first_answers.answered_at,
        first_answers.answered_at is not null as is_answered,
        greatest(invitations.extract_date, first_answers.extract_date) as extract_date,
        greatest(invitations.loaded_at, first_answers.loaded_at) as loaded_at,
        cast(now() as timestamptz) as built_at
    from invitations
    left join invitation_interactions
        on invitations.invitation_id = invitation_interactions.invitation_id
    left join catalogue
        on coalesce(invitations.touchpoint_code, invitation_interactions.touchpoint_code) = catalogue.touchpoint_code
    left join first_answers
        on invitations.invitation_id = first_answers.invitation_id
    left join customer_history
        on
            invitations.customer_id = customer_history.customer_id
            and invitations.sent_at < coalesce(customer_history.valid_to, 'infinity')
            and (
                invitations.sent_at >= customer_history.valid_from
                or customer_history.version_number = 1
            )

)

select * from final
