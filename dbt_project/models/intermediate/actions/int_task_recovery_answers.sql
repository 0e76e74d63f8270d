-- The answer to each recovery survey (flows/outbound.py): the survey tool returns the
-- invitation_id of the import file on the response, so the answer is found by that id
-- alone, never by customer and date (a customer's other answers are not the task's
-- effect). Only invited rows join, and only responses to them: the join stays as narrow
-- as the invitations, whatever the size of the response history. The first answer
-- counts when the survey tool sends more than one.
with

invitations as (

    select * from {{ source('ops', 'recovery_invitations') }}
    where status = 'invited'

),

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

answers as (

    select distinct on (invitations.task_id)
        invitations.task_id,
        invitations.invitation_id,
        invitations.customer_id,
        invitations.touchpoint_code,
        invitations.invite_date,
        responses.response_id,
        responses.responded_at,
        responses.nps,
        responses.csat
    from invitations
    inner join responses
        on invitations.invitation_id = responses.invitation_id
    order by invitations.task_id, responses.responded_at, responses.response_id

),

final as (

    select
        cast(task_id as text) as task_id,
        cast(invitation_id as text) as invitation_id,
        cast(customer_id as text) as customer_id,
        cast(touchpoint_code as text) as touchpoint_code,
        cast(invite_date as date) as invite_date,
        cast(response_id as text) as response_id,
        cast(responded_at as timestamp) as responded_at,
        cast(nps as integer) as recovery_nps,
        cast(csat as integer) as recovery_csat
    from answers

)

select * from final
