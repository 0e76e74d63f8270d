-- Top-box share of each goal (cxloop.yml `goals:`: a response column, its scale
-- and the answers that count as top box; a binary goal is 0/1 with top box 1)
-- by month x segment ('all' = every segment), with the change against the
-- previous calendar month. Answers outside the goal's declared range are left
-- out (they are not on the scale the share is about). Counts are kept so BI can
-- roll up.
{%- set goals = var('goals') %}
with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

goal_answers as (

    {%- for goal in goals %}
    {%- set answer = adapter.quote(goal['column']) %}
    select
        cast({{ dbt.string_literal(goal['name']) }} as text) as goal,
        cast({{ dbt.string_literal(goal['column']) }} as text) as goal_column,
        cast({{ dbt.string_literal(goal['kind']) }} as text) as goal_kind,
        cast({{ goal['range'][0] }} as double precision) as scale_low,
        cast({{ goal['range'][1] }} as double precision) as scale_high,
        cast({{ dbt.string_literal(goal['top_box'] | join(',')) }} as text) as top_box,
        cast(date_trunc('month', response_date) as date) as month_start,
        segment,
        customer_id,
        cast({{ answer }} as double precision) as answer,
        {{ answer }} in ({{ goal['top_box'] | join(', ') }}) as is_top_box
    from responses
    where {{ answer }} between {{ goal['range'][0] }} and {{ goal['range'][1] }}
    {%- if not loop.last %}

    union all
    {%- endif %}
    {%- endfor %}

),

monthly as (

    select
        goal,
        goal_column,
        goal_kind,
        scale_low,
        scale_high,
        top_box,
        month_start,
        coalesce(segment, 'all') as segment,
        count(*) as n_answers,
        count(distinct customer_id) as n_customers,
        count(*) filter (where is_top_box) as n_top_box,
        avg(answer) as mean_answer
    from goal_answers
    group by grouping sets (
        (goal, goal_column, goal_kind, scale_low, scale_high, top_box, month_start, segment),
        (goal, goal_column, goal_kind, scale_low, scale_high, top_box, month_start)
    )

),

with_previous as (

    select
        current_month.*,
        current_month.n_top_box * 1.0 / current_month.n_answers as top_box_share,
        previous_month.n_top_box * 1.0 / previous_month.n_answers as previous_top_box_share,
        previous_month.mean_answer as previous_mean_answer
    from monthly as current_month
    left join monthly as previous_month
        on
            current_month.goal = previous_month.goal
            and current_month.segment = previous_month.segment
            and previous_month.month_start
            = cast(current_month.month_start - interval '1 month' as date)

),

final as (

    select
        cast(goal || '|' || segment || '|' || month_start as text) as goal_trend_key,
        cast(goal as text) as goal,
        cast(goal_column as text) as goal_column,
        cast(goal_kind as text) as goal_kind,
        cast(scale_low as double precision) as scale_low,
        cast(scale_high as double precision) as scale_high,
        cast(top_box as text) as top_box,
        cast(month_start as date) as month_start,
        cast(segment as text) as segment,
        cast(n_answers as integer) as n_answers,
        cast(n_customers as integer) as n_customers,
        cast(n_top_box as integer) as n_top_box,
        cast(top_box_share as double precision) as top_box_share,
        cast(mean_answer as double precision) as mean_answer,
        cast(previous_top_box_share as double precision) as previous_top_box_share,
        cast(top_box_share - previous_top_box_share as double precision) as top_box_share_change,
        cast(mean_answer - previous_mean_answer as double precision) as mean_answer_change
    from with_previous

)

select * from final
