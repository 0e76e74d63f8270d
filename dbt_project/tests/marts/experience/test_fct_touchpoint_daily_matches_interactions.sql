-- Rule: the daily fact loses and duplicates no interaction: per touchpoint and
-- day, its interaction count equals the enriched interactions'.
with

fact as (

    select
        touchpoint_code,
        date_day,
        sum(n_interactions) as n_interactions
    from {{ ref('fct_touchpoint_daily') }}
    where date_day <= {{ run_date() }}
    group by 1, 2

),

interactions as (

    select
        touchpoint_code,
        occurred_on as date_day,
        count(*) as n_interactions
    from {{ ref('int_interactions_enriched') }}
    group by 1, 2

)

select
    coalesce(fact.touchpoint_code, interactions.touchpoint_code) as touchpoint_code,
    coalesce(fact.date_day, interactions.date_day) as date_day,
    fact.n_interactions as fact_interactions,
    interactions.n_interactions as source_interactions
from fact
full outer join interactions
    on
        fact.touchpoint_code = interactions.touchpoint_code
        and fact.date_day = interactions.date_day
where coalesce(fact.n_interactions, 0) <> coalesce(interactions.n_interactions, 0)
