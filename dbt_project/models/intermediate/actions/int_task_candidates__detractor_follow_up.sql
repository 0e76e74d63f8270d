-- Task rule detractor_follow_up (tasks.yml): fast recovery. A detractor (NPS <=
-- `max_nps`, default 6) who left a comment or has an unresolved contact in the
-- last 14 days gets a call. Candidates for every date of the task date spine
-- (task_dates_from .. run_date, as int_task_dates), each
-- with what that night's run would have seen: answers given that day or the day
-- before (a two-day look-back for late answers) and delivered by then (extract
-- date), the customer's attributes valid that day. The task is pinned to the
-- answer's day (`period`), so the look-back never makes it twice.
{%- set max_nps = task_param('detractor_follow_up', 'max_nps', 6) | int %}
{%- set unresolved_days = task_param('detractor_follow_up', 'unresolved_days', 14) | int %}
with

task_dates as (

    {{ task_date_spine() }}

),

responses as (

    select * from {{ ref('stg_survey__responses') }}
    where nps <= {{ max_nps }}

),

interactions as (

    select * from {{ ref('stg_crm__interactions') }}
    where not is_resolved

),

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_values as (

    select * from {{ ref('mart_customer_360') }}

),

-- each detractor answer counts on its own day and the next (the two-day look-back),
-- unrolled so the dates join on equality, once delivered (extract date)
answer_days as (

    select
        responses.customer_id,
        responses.response_id,
        responses.nps,
        responses.touchpoint_code,
        responses.comment is not null as has_comment,
        responses.responded_at,
        responses.extract_date,
        cast(responses.responded_at as date) + look_back.days as as_of_date
    from responses
    cross join (values (0), (1)) as look_back (days)

),

recent_detractors as (

    select
        task_dates.as_of_date,
        answer_days.customer_id,
        answer_days.response_id,
        answer_days.nps,
        answer_days.touchpoint_code,
        answer_days.has_comment,
        answer_days.responded_at,
        row_number() over (
            partition by task_dates.as_of_date, answer_days.customer_id
            order by answer_days.responded_at desc, answer_days.response_id desc
        ) as recency
    from task_dates
    inner join answer_days
        on
            task_dates.as_of_date = answer_days.as_of_date
            and task_dates.as_of_date >= answer_days.extract_date

),

latest_detractors as (

    select * from recent_detractors
    where recency = 1

),

-- the customer's attributes (region, segment, consent) valid on the date; a
-- customer first known later than that keeps their first version
customer_as_of as (

    select distinct on (latest_detractors.as_of_date, latest_detractors.customer_id)
        latest_detractors.as_of_date,
        latest_detractors.customer_id,
        customers.region,
        customers.segment,
        customers.marketing_consent
    from latest_detractors
    inner join customers
        on latest_detractors.customer_id = customers.customer_id
    order by
        latest_detractors.as_of_date asc,
        latest_detractors.customer_id asc,
        customers.valid_from < latest_detractors.as_of_date + 1 desc,
        case when customers.valid_from < latest_detractors.as_of_date + 1 then customers.valid_from end desc,
        customers.valid_from asc

),

unresolved as (

    select
        latest_detractors.as_of_date,
        latest_detractors.customer_id,
        count(*) as n_unresolved
    from latest_detractors
    inner join interactions
        on
            latest_detractors.customer_id = interactions.customer_id
            and interactions.occurred_at >= latest_detractors.as_of_date - {{ unresolved_days }}
            and interactions.occurred_at < latest_detractors.as_of_date + 1
    group by latest_detractors.as_of_date, latest_detractors.customer_id

),

candidates as (

    select
        latest_detractors.as_of_date,
        latest_detractors.customer_id as subject_id,
        to_char(latest_detractors.responded_at, 'YYYY-MM-DD') as period,
        'customer' as routing_key,
        customer_as_of.region,
        customer_as_of.segment,
        coalesce(customer_as_of.marketing_consent, false) as marketing_consent,
        customer_values.value_at_risk,
        jsonb_build_object(
            'response_id', latest_detractors.response_id,
            'nps', latest_detractors.nps,
            'touchpoint', coalesce(latest_detractors.touchpoint_code, 'the relationship'),
            'has_comment', latest_detractors.has_comment,
            'n_unresolved', coalesce(unresolved.n_unresolved, 0),
            'responded_on', to_char(latest_detractors.responded_at, 'YYYY-MM-DD'),
            'region', customer_as_of.region,
            'segment', customer_as_of.segment,
            'value_at_risk', customer_values.value_at_risk
        ) as evidence
    from latest_detractors
    inner join customer_as_of
        on
            latest_detractors.as_of_date = customer_as_of.as_of_date
            and latest_detractors.customer_id = customer_as_of.customer_id
    left join customer_values
        on latest_detractors.customer_id = customer_values.customer_id
    left join unresolved
        on
            latest_detractors.as_of_date = unresolved.as_of_date
            and latest_detractors.customer_id = unresolved.customer_id
    where latest_detractors.has_comment or unresolved.n_unresolved > 0

),

routed as (

    {{ route_to_owner('candidates') }}

),

final as (

    select
        {{ task_candidate_columns(
            "coalesce(value_at_risk, 0)",
            "'value at risk of a detractor who is waiting for an answer'"
        ) }}
    from routed

)

select * from final
