{{ config(tags=['after_python']) }}
-- Driver importance (from the Python step): how strongly each survey item /
-- touchpoint moves each goal (cxloop.yml `goals:`), for all customers and per
-- segment_by value, with the sign of its effect, the bootstrap interval and the
-- touchpoint's owner.
with

importance as (

    select * from {{ source('python_outputs', 'py_driver_importance') }}

),

items as (

    select * from {{ ref('survey_items') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

final as (

    select
        cast(
            importance.goal || '|' || importance.segment_by || '|' || importance.segment
            || '|' || importance.item_code as text
        ) as driver_importance_key,
        cast(importance.goal as text) as goal,
        cast(importance.segment_by as text) as segment_by,
        cast(importance.segment as text) as segment,
        cast(importance.item_code as text) as item_code,
        cast(items.item_text as text) as item_text,
        cast(coalesce(importance.touchpoint_code, items.touchpoint_code) as text) as touchpoint_code,
        cast(catalogue.touchpoint_name as text) as touchpoint_name,
        cast(catalogue.journey_stage as text) as journey_stage,
        cast(items.experience_dimension as text) as experience_dimension,
        cast(catalogue.owner_team as text) as owner_team,
        cast(catalogue.is_key_touchpoint as boolean) as is_key_touchpoint,
        cast(importance.n as integer) as n_ratings,
        cast(importance.importance as double precision) as importance,
        cast(importance.importance_low as double precision) as importance_low,
        cast(importance.importance_high as double precision) as importance_high,
        cast(importance.std_beta as double precision) as std_beta,
        cast(importance.effect_sign as integer) as effect_sign,
        cast(importance.mean_rating as double precision) as mean_rating,
        cast(importance.r_squared as double precision) as r_squared,
        cast(
            rank() over (
                partition by importance.goal, importance.segment_by, importance.segment
                order by importance.importance desc
            ) as integer
        ) as importance_rank,
        cast(importance.method as text) as method
    from importance
    left join items
        on importance.item_code = items.item_code
    left join catalogue
        on coalesce(importance.touchpoint_code, items.touchpoint_code) = catalogue.touchpoint_code

)

select * from final
