-- Each customer's journey: their service interactions in order, with the step
-- number, the time since the previous step, whether the step goes back to an
-- earlier journey stage or repeats a touchpoint within 7 days, and the CSAT
-- given for that step when the customer answered its survey.
-- Kept by key (macros/incremental_by_key.sql): a nightly rebuilds the steps whose
-- interaction row was rewritten (int_interactions_enriched rewrites every step of a
-- touched customer: a new or corrected step renumbers the ones after it) or whose
-- answers changed, not the 10M steps of a year at 1M customers (61 s rebuilt whole).
{#- a contracted incremental model adds new columns, never drops one (dbt's rule);
    the answers of the steps to rebuild are found through an index on their interaction -#}
{{ config(**key_incremental('interaction_id', [
    ['int_interactions_enriched', 'interaction_id', 'interaction_id'],
    ['int_responses_enriched', 'interaction_id', 'interaction_id'],
], on_schema_change='append_new_columns', pre_hooks=[
    "{{ ensure_indexes(['interaction_id'], ref('int_responses_enriched')) }}",
])) }}
with

interactions as (

    select * from {{ ref('int_interactions_enriched') }}
    {{ key_only_touched() }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

step_ratings as (

    select
        responses.interaction_id,
        avg(responses.csat) as csat,
        avg(responses.ces) as ces,
        max(responses.nps) as nps
    from responses
    where responses.interaction_id is not null {{ key_only_touched('responses', clause='and') }}
    group by responses.interaction_id

),

final as (

    select
        cast(interactions.interaction_id as text) as interaction_id,
        cast(interactions.customer_id as text) as customer_id,
        cast(interactions.step_number as integer) as step_number,
        cast(interactions.touchpoint_code as text) as touchpoint_code,
        cast(interactions.touchpoint_name as text) as touchpoint_name,
        cast(interactions.journey_stage as text) as journey_stage,
        cast(interactions.stage_order as integer) as stage_order,
        cast(interactions.channel as text) as channel,
        cast(interactions.segment as text) as segment,
        cast(interactions.region as text) as region,
        cast(interactions.occurred_at as timestamp) as occurred_at,
        cast(interactions.previous_touchpoint_code as text) as previous_touchpoint_code,
        cast(
            extract(epoch from interactions.occurred_at - interactions.previous_occurred_at) / 3600.0
            as double precision
        ) as hours_since_previous_step,
        cast(
            coalesce(interactions.stage_order < interactions.previous_stage_order, false) as boolean
        ) as is_stage_backtrack,
        cast(interactions.is_repeat_contact as boolean) as is_repeat_contact,
        cast(interactions.is_resolved as boolean) as is_resolved,
        cast(interactions.wait_seconds as integer) as wait_seconds,
        cast(step_ratings.csat as double precision) as step_csat,
        cast(step_ratings.ces as double precision) as step_ces,
        cast(step_ratings.nps as integer) as step_nps,
        cast(now() as timestamptz) as built_at
    from interactions
    left join step_ratings
        on interactions.interaction_id = step_ratings.interaction_id

)

select * from final
