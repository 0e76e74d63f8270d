{{ config(**customer_incremental()) }}
-- Each customer's journey in one row: how many steps at how many touchpoints, the
-- first and last, repeats and unresolved contacts, the stages seen. Kept by customer
-- (macros/incremental_by_customer.sql): a nightly re-summarises the customers whose
-- interactions changed, not ten million steps (mart_customer_360 reads it).
with

interactions as (

    select * from {{ ref('int_interactions_enriched') }}
    {{ customer_only_touched('customer_id') }}

),

final as (

    select
        customer_id,
        cast(count(*) as integer) as n_interactions,
        cast(count(distinct touchpoint_code) as integer) as n_touchpoints,
        min(occurred_at) as first_interaction_at,
        max(occurred_at) as last_interaction_at,
        {{ latest_value('touchpoint_code', 'step_number') }} as last_touchpoint_code,
        cast(count(*) filter (where is_repeat_contact) as integer) as n_repeat_contacts,
        cast(count(*) filter (where not is_resolved) as integer) as n_unresolved,
        string_agg(distinct journey_stage, ', ') as journey_stages_seen,
        cast(now() as timestamptz) as built_at
    from interactions
    group by customer_id

)

select * from final
