{{ config(tags=['after_python']) }}
-- Action-priority quadrant: each survey item (touchpoint attribute) placed by
-- importance (its driver weight for overall satisfaction, all segments) x
-- performance (its mean rating). Cut points are the means across items and
-- are stated on every row:
--   fix_first          importance >= cut, performance <  cut
--   keep_up            importance >= cut, performance >= cut
--   low_priority       importance <  cut, performance <  cut
--   possible_overkill  importance <  cut, performance >= cut
-- placement_is_uncertain: the importance interval straddles the cut.
with

importance as (

    select * from {{ source('python_outputs', 'py_driver_importance') }}
    where goal = 'overall_satisfaction' and segment = 'all'

),

driver_inputs as (

    select * from {{ ref('int_driver_inputs') }}

),

items as (

    select * from {{ ref('survey_items') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

observed_ratings as (

    select
        item_code,
        avg(rating) as mean_rating,
        count(*) as n_ratings
    from driver_inputs
    group by item_code

),

measured as (

    select
        importance.item_code,
        coalesce(importance.touchpoint_code, items.touchpoint_code) as touchpoint_code,
        importance.importance,
        importance.importance_low,
        importance.importance_high,
        coalesce(importance.mean_rating, observed_ratings.mean_rating) as performance,
        coalesce(importance.n, observed_ratings.n_ratings) as n_ratings
    from importance
    left join observed_ratings
        on importance.item_code = observed_ratings.item_code
    left join items
        on importance.item_code = items.item_code

),

with_cuts as (

    select
        *,
        avg(importance) over () as importance_cut,
        avg(performance) over () as performance_cut
    from measured

),

placed as (

    select
        *,
        case
            when importance is null or performance is null then null
            when importance >= importance_cut and performance < performance_cut then 'fix_first'
            when importance >= importance_cut then 'keep_up'
            when performance < performance_cut then 'low_priority'
            else 'possible_overkill'
        end as quadrant
    from with_cuts

),

final as (

    select
        cast(placed.item_code as text) as item_code,
        cast(items.item_text as text) as item_text,
        cast(placed.touchpoint_code as text) as touchpoint_code,
        cast(catalogue.touchpoint_name as text) as touchpoint_name,
        cast(items.experience_dimension as text) as experience_dimension,
        cast(catalogue.owner_team as text) as owner_team,
        cast(catalogue.is_key_touchpoint as boolean) as is_key_touchpoint,
        cast('overall_satisfaction' as text) as goal,
        cast('all' as text) as segment,
        cast(placed.n_ratings as integer) as n_ratings,
        cast(placed.importance as double precision) as importance,
        cast(placed.importance_low as double precision) as importance_low,
        cast(placed.importance_high as double precision) as importance_high,
        cast(placed.performance as double precision) as performance,
        cast(placed.importance_cut as double precision) as importance_cut,
        cast(placed.performance_cut as double precision) as performance_cut,
        cast(placed.quadrant as text) as quadrant,
        cast(
            coalesce(
                placed.importance_low < placed.importance_cut
                and placed.importance_high >= placed.importance_cut,
                false
            ) as boolean
        ) as placement_is_uncertain,
        cast(
            rank() over (
                order by
                    case placed.quadrant
                        when 'fix_first' then 1
                        when 'keep_up' then 2
                        when 'low_priority' then 3
                        else 4
                    end,
                    placed.importance * (placed.performance_cut - placed.performance) desc
            ) as integer
        ) as priority_rank
    from placed
    left join items
        on placed.item_code = items.item_code
    left join catalogue
        on placed.touchpoint_code = catalogue.touchpoint_code

)

select * from final
