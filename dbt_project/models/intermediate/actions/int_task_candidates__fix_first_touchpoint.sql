-- Task rule fix_first_touchpoint (tasks.yml): a touchpoint that matters most for
-- satisfaction and performs worst, i.e. placed fix_first on the action-priority
-- quadrant for the headline goal and all customers (the first goal in cxloop.yml
-- `goals:`). One candidate per touchpoint, its worst item as evidence, valued by
-- the unhappy customers it puts at risk. The quadrant is fitted once per run, so
-- the rule does not look back: candidates hold as of run_date only.
with

quadrant as (

    select * from {{ ref('mart_priority_quadrant') }}
    where quadrant = 'fix_first' and is_headline

),

unhappy_customers as (

    select * from {{ ref('int_touchpoint_unhappy_customers') }}

),

worst_items as (

    select
        touchpoint_code,
        item_code,
        importance,
        performance,
        importance_cut,
        rating_cut,
        placement_is_uncertain,
        n_ratings,
        row_number() over (
            partition by touchpoint_code order by priority_rank, item_code
        ) as item_rank
    from quadrant

),

candidates as (

    select
        {{ run_date() }} as as_of_date,
        worst_items.touchpoint_code as subject_id,
        cast(null as text) as period,
        worst_items.touchpoint_code as routing_key,
        cast(null as text) as region,
        cast(null as text) as segment,
        cast(null as boolean) as marketing_consent,
        coalesce(unhappy_customers.value_at_risk, 0) as value_at_risk,
        jsonb_build_object(
            'touchpoint_code', worst_items.touchpoint_code,
            'item_code', worst_items.item_code,
            'importance', worst_items.importance,
            'performance', worst_items.performance,
            'importance_cut', worst_items.importance_cut,
            'rating_cut', worst_items.rating_cut,
            'placement_is_uncertain', worst_items.placement_is_uncertain,
            'n_ratings', worst_items.n_ratings,
            'n_unhappy_customers', coalesce(unhappy_customers.n_unhappy_customers, 0),
            'value_at_risk', coalesce(unhappy_customers.value_at_risk, 0)
        ) as evidence
    from worst_items
    left join unhappy_customers
        on worst_items.touchpoint_code = unhappy_customers.touchpoint_code
    where worst_items.item_rank = 1

),

routed as (

    {{ route_to_owner('candidates') }}

),

final as (

    select
        {{ task_candidate_columns(
            "value_at_risk",
            "'value at risk of its unhappy customers'"
        ) }}
    from routed

)

select * from final
