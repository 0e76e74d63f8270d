-- Apostle groups month by month: at the end of each month (run_date for the
-- current one), each customer is placed by their latest relationship response
-- so far and whether they had churned by then; counts, shares and the annual
-- value each group carries. Every group appears every month (zero if empty).
with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

subscriptions as (

    select * from {{ ref('int_subscriptions_rolled_up') }}

),

relationship_responses as (

    select * from responses
    where
        survey_type = 'relationship'
        and overall_satisfaction is not null
        and likelihood_to_renew is not null

),

months as (

    select
        cast(month_start as date) as month_start,
        least(
            cast(month_start + interval '1 month' - interval '1 day' as date),
            {{ run_date() }}
        ) as as_of_date
    from generate_series(
            (select date_trunc('month', min(response_date)) from relationship_responses),
            date_trunc('month', {{ run_date() }}),
            interval '1 month'
        ) as month_start

),

groups as (

    select group_name as apostle_group
    from (
        values ('apostle'), ('loyalist'), ('mercenary'), ('hostage'), ('defector')
    ) as apostle_groups (group_name)

),

latest_by_month as (

    select distinct on (months.month_start, relationship_responses.customer_id)
        months.month_start,
        months.as_of_date,
        relationship_responses.customer_id,
        relationship_responses.overall_satisfaction,
        relationship_responses.likelihood_to_renew
    from months
    inner join relationship_responses
        on months.as_of_date >= relationship_responses.response_date
    order by
        months.month_start asc,
        relationship_responses.customer_id asc,
        relationship_responses.responded_at desc,
        relationship_responses.response_id desc

),

placed as (

    select
        latest_by_month.month_start,
        latest_by_month.customer_id,
        subscriptions.monthly_value,
        {{ apostle_group(
            'latest_by_month.overall_satisfaction',
            'latest_by_month.likelihood_to_renew',
            'subscriptions.churned_on <= latest_by_month.as_of_date'
        ) }} as apostle_group
    from latest_by_month
    left join subscriptions
        on latest_by_month.customer_id = subscriptions.customer_id

),

counted as (

    select
        months.month_start,
        months.as_of_date,
        groups.apostle_group,
        count(placed.customer_id) as n_customers,
        coalesce(sum(placed.monthly_value) * 12, 0) as annual_value
    from months
    cross join groups
    left join placed
        on
            months.month_start = placed.month_start
            and groups.apostle_group = placed.apostle_group
    group by months.month_start, months.as_of_date, groups.apostle_group

),

final as (

    select
        cast(month_start || '|' || apostle_group as text) as apostle_summary_key,
        cast(month_start as date) as month_start,
        cast(as_of_date as date) as as_of_date,
        cast(apostle_group as text) as apostle_group,
        cast(n_customers as integer) as n_customers,
        cast(
            n_customers * 1.0 / nullif(sum(n_customers) over (partition by month_start), 0)
            as double precision
        ) as share_of_customers,
        cast(annual_value as numeric(16, 2)) as annual_value,
        cast(
            annual_value / nullif(sum(annual_value) over (partition by month_start), 0)
            as double precision
        ) as share_of_value,
        cast({{ var('apostle_satisfaction_cut') }} as integer) as satisfaction_cut,
        cast({{ var('apostle_loyalty_cut') }} as integer) as loyalty_cut
    from counted

)

select * from final
