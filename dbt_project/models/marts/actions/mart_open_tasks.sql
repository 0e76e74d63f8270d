{{ config(materialized='view', tags=['after_python']) }}
-- Open improvement tasks (open or in progress) for BI: one row per task with its
-- owner, age and SLA status. A view over ops.improvement_tasks, so people's
-- edits and the task stage's writes (which run after the last dbt build) show
-- at once. The clock is the run's as-of time (midnight after run_date), the
-- same timeline the task stage writes created_at and due_at on.
-- No personal data: customer ids only, no evidence (it may quote comments).
-- sla_status: overdue (past due), due_soon (due within 24 hours), on_track.
with

tasks as (

    select * from {{ source('ops', 'improvement_tasks') }}
    where status in ('open', 'in_progress')

),

clock as (

    select cast({{ run_date() }} + 1 as timestamp) at time zone 'UTC' as as_of_at

),

measured as (

    select
        tasks.*,
        clock.as_of_at,
        extract(epoch from clock.as_of_at - tasks.created_at) / 86400.0 as age_days,
        extract(epoch from tasks.due_at - clock.as_of_at) / 3600.0 as hours_to_due
    from tasks
    cross join clock

),

final as (

    select
        cast(task_id as text) as task_id,
        cast(rule as text) as rule_name,
        cast(subject_type as text) as subject_type,
        cast(subject_id as text) as subject_id,
        cast(period as text) as period,
        cast(title as text) as title,
        cast(status as text) as status,
        cast(priority as integer) as priority,
        cast(escalation_level as integer) as escalation_level,
        cast(owner_team as text) as owner_team,
        cast(owner_person as text) as owner_person,
        cast(routed_to_fallback as boolean) as routed_to_fallback,
        cast(assignee as text) as assignee,
        cast(escalated_to as text) as escalated_to,
        cast(coalesce(assignee, escalated_to, owner_person) as text) as accountable_person,
        cast(is_contact as boolean) as is_contact,
        cast(condition_active as boolean) as condition_active,
        cast(value_at_risk as numeric(14, 2)) as value_at_risk,
        cast(created_at as timestamptz) as created_at,
        cast(due_at as timestamptz) as due_at,
        cast(as_of_at as timestamptz) as as_of_at,
        cast(greatest(age_days, 0) as double precision) as age_days,
        cast(
            case
                when age_days < 2 then '0-1 days'
                when age_days < 8 then '2-7 days'
                when age_days < 31 then '8-30 days'
                else 'over 30 days'
            end as text
        ) as age_band,
        cast(hours_to_due as double precision) as hours_to_due,
        cast(
            case
                when hours_to_due < 0 then 'overdue'
                when hours_to_due <= 24 then 'due_soon'
                else 'on_track'
            end as text
        ) as sla_status
    from measured

)

select * from final
