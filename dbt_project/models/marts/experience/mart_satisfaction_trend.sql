-- NPS, CSAT, CES, overall satisfaction and likelihood to renew by month x
-- segment x region (the customer's segment and region when answering), with
-- the change against the previous month. Counts are kept so BI can roll up.
with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

monthly as (

    select
        cast(date_trunc('month', response_date) as date) as month_start,
        segment,
        region,
        count(*) as n_responses,
        count(distinct customer_id) as n_customers,
        count(*) filter (where survey_type = 'relationship') as n_relationship_responses,
        count(nps) as nps_n,
        count(*) filter (where nps_category = 'promoter') as nps_promoters,
        count(*) filter (where nps_category = 'passive') as nps_passives,
        count(*) filter (where nps_category = 'detractor') as nps_detractors,
        {{ nps('nps') }} as nps,
        count(csat) as csat_n,
        avg(csat) as csat,
        avg(ces) as ces,
        avg(overall_satisfaction) as overall_satisfaction,
        avg(likelihood_to_renew) as likelihood_to_renew
    from responses
    group by 1, 2, 3

),

final as (

    select
        cast(month_start || '|' || segment || '|' || region as text) as trend_key,
        cast(month_start as date) as month_start,
        cast(segment as text) as segment,
        cast(region as text) as region,
        cast(n_responses as integer) as n_responses,
        cast(n_customers as integer) as n_customers,
        cast(n_relationship_responses as integer) as n_relationship_responses,
        cast(nps_n as integer) as nps_n,
        cast(nps_promoters as integer) as nps_promoters,
        cast(nps_passives as integer) as nps_passives,
        cast(nps_detractors as integer) as nps_detractors,
        cast(nps as double precision) as nps,
        cast(csat_n as integer) as csat_n,
        cast(csat as double precision) as csat,
        cast(ces as double precision) as ces,
        cast(overall_satisfaction as double precision) as overall_satisfaction,
        cast(likelihood_to_renew as double precision) as likelihood_to_renew,
        cast(
            nps - lag(nps) over (
                partition by segment, region order by month_start
            ) as double precision
        ) as nps_change,
        cast(
            csat - lag(csat) over (
                partition by segment, region order by month_start
            ) as double precision
        ) as csat_change
    from monthly

)

select * from final
