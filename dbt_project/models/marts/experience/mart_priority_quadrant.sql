{{ config(tags=['after_python']) }}
-- Action-priority quadrant: each survey item (touchpoint attribute) placed by
-- importance (its driver weight for a goal, per segment group: 'all' and each
-- segment_by value) x performance (its mean rating), by the cut rule of
-- cxloop.yml `quadrant.cut` (var quadrant_cut), stated on every row:
--   mean    importance cut = mean share over the positive-effect items,
--           rating cut = mean rating over all items
--   median  the same with medians
--   target  the configured importance_target and rating_target
-- Labels (an item on a cut counts as high):
--   negative_effect    standardised regression weight < 0: never a driver to fix
--   fix_first          importance >= cut, performance <  cut
--   keep_up            importance >= cut, performance >= cut
--   low_priority       importance <  cut, performance <  cut
--   possible_overkill  importance <  cut, performance >= cut
-- placement_is_uncertain: the bootstrap (both axes, flows/drivers.py) put the
-- item in another quadrant in more than quadrant_uncertain_flip_share of the
-- resamples. is_headline: the first configured goal, all customers.
{%- set cut_rule = var('quadrant_cut') %}
{%- if cut_rule not in ('mean', 'median', 'target') %}
    {{ exceptions.raise_compiler_error(
        "var quadrant_cut: " ~ cut_rule ~ " (use mean, median or target; cxloop.yml quadrant.cut)") }}
{%- endif %}
{%- if cut_rule == 'target'
    and (var('quadrant_importance_target') is none or var('quadrant_rating_target') is none) %}
    {{ exceptions.raise_compiler_error(
        "quadrant_cut is target: set quadrant_importance_target and quadrant_rating_target "
        ~ "(cxloop.yml quadrant.importance_target, quadrant.rating_target)") }}
{%- endif %}
{%- set headline_goal = var('goals')[0]['name'] %}
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

measured as (

    select
        importance.goal,
        importance.segment_by,
        importance.segment,
        importance.item_code,
        coalesce(importance.touchpoint_code, items.touchpoint_code) as touchpoint_code,
        importance.n as n_ratings,
        importance.importance,
        importance.importance_low,
        importance.importance_high,
        importance.std_beta,
        coalesce(
            importance.effect_sign,
            case when importance.std_beta < 0 then -1 else 1 end
        ) as effect_sign,
        importance.mean_rating as performance,
        importance.mean_rating_low as performance_low,
        importance.mean_rating_high as performance_high,
        importance.placement_flip_share
    from importance
    left join items
        on importance.item_code = items.item_code

),

cuts as (

    select
        goal,
        segment_by,
        segment,
        {%- if cut_rule == 'target' %}
        cast({{ var('quadrant_importance_target') }} as double precision) as importance_cut,
        cast({{ var('quadrant_rating_target') }} as double precision) as rating_cut
        {%- elif cut_rule == 'median' %}
        coalesce(
            percentile_cont(0.5) within group (order by importance) filter (where effect_sign > 0),
            percentile_cont(0.5) within group (order by importance)
        ) as importance_cut,
        percentile_cont(0.5) within group (order by performance) as rating_cut
        {%- else %}
        coalesce(avg(importance) filter (where effect_sign > 0), avg(importance)) as importance_cut,
        avg(performance) as rating_cut
        {%- endif %}
    from measured
    group by goal, segment_by, segment

),

placed as (

    select
        measured.*,
        cuts.importance_cut,
        cuts.rating_cut,
        case
            when measured.importance is null or measured.performance is null then null
            when measured.effect_sign < 0 then 'negative_effect'
            when
                measured.importance >= cuts.importance_cut
                and measured.performance < cuts.rating_cut
                then 'fix_first'
            when measured.importance >= cuts.importance_cut then 'keep_up'
            when measured.performance < cuts.rating_cut then 'low_priority'
            else 'possible_overkill'
        end as quadrant
    from measured
    inner join cuts
        on
            measured.goal = cuts.goal
            and measured.segment_by = cuts.segment_by
            and measured.segment = cuts.segment

),

final as (

    select
        cast(
            placed.goal || '|' || placed.segment_by || '|' || placed.segment || '|' || placed.item_code
            as text
        ) as quadrant_key,
        cast(placed.goal as text) as goal,
        cast(placed.segment_by as text) as segment_by,
        cast(placed.segment as text) as segment,
        cast(
            placed.goal = {{ dbt.string_literal(headline_goal) }} and placed.segment_by = 'all'
            as boolean
        ) as is_headline,
        cast(placed.item_code as text) as item_code,
        cast(items.item_text as text) as item_text,
        cast(placed.touchpoint_code as text) as touchpoint_code,
        cast(catalogue.touchpoint_name as text) as touchpoint_name,
        cast(items.experience_dimension as text) as experience_dimension,
        cast(catalogue.owner_team as text) as owner_team,
        cast(catalogue.is_key_touchpoint as boolean) as is_key_touchpoint,
        cast(placed.n_ratings as integer) as n_ratings,
        cast(placed.importance as double precision) as importance,
        cast(placed.importance_low as double precision) as importance_low,
        cast(placed.importance_high as double precision) as importance_high,
        cast(placed.std_beta as double precision) as std_beta,
        cast(placed.effect_sign as integer) as effect_sign,
        cast(
            case when placed.effect_sign < 0 then 'negative' else 'positive' end as text
        ) as direction,
        cast(placed.effect_sign * placed.importance as double precision) as signed_importance,
        cast(placed.performance as double precision) as performance,
        cast(placed.performance_low as double precision) as performance_low,
        cast(placed.performance_high as double precision) as performance_high,
        cast({{ dbt.string_literal(cut_rule) }} as text) as cut_rule,
        cast(placed.importance_cut as double precision) as importance_cut,
        cast(placed.rating_cut as double precision) as rating_cut,
        cast(placed.quadrant as text) as quadrant,
        cast(placed.placement_flip_share as double precision) as placement_flip_share,
        cast(
            coalesce(
                placed.placement_flip_share > {{ var('quadrant_uncertain_flip_share') }},
                placed.importance_low < placed.importance_cut
                and placed.importance_high >= placed.importance_cut,
                false
            ) as boolean
        ) as placement_is_uncertain,
        cast(
            rank() over (
                partition by placed.goal, placed.segment_by, placed.segment
                order by
                    case placed.quadrant
                        when 'fix_first' then 1
                        when 'keep_up' then 2
                        when 'low_priority' then 3
                        when 'possible_overkill' then 4
                        else 5
                    end,
                    placed.importance * (placed.rating_cut - placed.performance) desc
            ) as integer
        ) as priority_rank
    from placed
    left join items
        on placed.item_code = items.item_code
    left join catalogue
        on placed.touchpoint_code = catalogue.touchpoint_code

)

select * from final
