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

-- relationship answers up to run_date, with the month each was given in
answers_by_month as (

    select
        customer_id,
        response_id,
        responded_at,
        overall_satisfaction,
        likelihood_to_renew,
        cast(date_trunc('month', response_date) as date) as answered_month
    from relationship_responses
    where response_date <= {{ run_date() }}

),

-- each customer's last answer of each month they answered in (answers are ordered by
-- time, and a day's date follows its time)
monthly_last as (

    select distinct on (customer_id, answered_month)
        customer_id,
        answered_month,
        overall_satisfaction,
        likelihood_to_renew
    from answers_by_month
    order by customer_id asc, answered_month asc, responded_at desc, response_id desc

),

-- that answer is the customer's latest until the next month they answered in
monthly_spans as (

    select
        monthly_last.*,
        lead(monthly_last.answered_month) over (
            partition by monthly_last.customer_id
            order by monthly_last.answered_month
        ) as next_answered_month
    from monthly_last

),

-- at the end of each month (run_date for the current one) the customer's latest answer
-- so far: each answer spread over its months, not every answer joined to every later
-- month and sorted (at 1M customers that sort was most of the mart's time)
latest_by_month as (

    select
        months.month_start,
        months.as_of_date,
        monthly_spans.customer_id,
        monthly_spans.overall_satisfaction,
        monthly_spans.likelihood_to_renew
    from monthly_spans
    inner join months
        on
            monthly_spans.answered_month <= months.month_start
            and coalesce(monthly_spans.next_answered_month, date '9999-12-31') > months.month_start

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
