{{ config(materialized='view', tags=['after_python']) }}
-- Customer tasks waiting for capacity: what each rule would have opened on its
-- latest evaluated date but its owner team's capacity (owner_capacity seed:
-- tasks per day or week per rule class) held back, in the order they would be
-- opened as capacity frees up (backlog_rank 1 = next), with why (priority_score
-- and what it measures). A view over ops.task_backlog, which the task stage
-- rewrites per rule and date, so the backlog of the last run shows at once.
-- No personal data and no evidence: customer ids and the task's title only.
with

backlog as (

    select * from {{ source('ops', 'task_backlog') }}

),

capacity as (

    select * from {{ ref('owner_capacity') }}

),

latest as (

    select
        backlog.*,
        max(backlog.as_of_date) over (partition by backlog.rule) as latest_date
    from backlog

),

team_capacity as (

    select distinct on (latest.rule, latest.subject_id)
        latest.rule,
        latest.subject_id,
        capacity.capacity,
        capacity.period as capacity_period
    from latest
    left join capacity
        on
            latest.rule_class = capacity.rule_class
            and capacity.owner_team in (latest.owner_team, '*')
    where latest.as_of_date = latest.latest_date
    order by latest.rule, latest.subject_id, capacity.owner_team = '*'

),

final as (

    select
        cast(latest.rule || '|' || latest.subject_id as text) as backlog_key,
        cast(latest.as_of_date as date) as as_of_date,
        cast(latest.rule as text) as rule_name,
        cast(latest.rule_class as text) as rule_class,
        cast(latest.owner_team as text) as owner_team,
        cast(latest.owner_person as text) as owner_person,
        cast(latest.subject_type as text) as subject_type,
        cast(latest.subject_id as text) as subject_id,
        cast(latest.period as text) as period,
        cast(latest.title as text) as title,
        cast(latest.backlog_rank as integer) as backlog_rank,
        cast(
            row_number() over (
                partition by latest.owner_team, latest.rule_class
                order by latest.priority_score desc, latest.rule asc, latest.subject_id asc
            ) as integer
        ) as team_rank,
        cast(latest.priority_score as double precision) as priority_score,
        cast(latest.priority_reason as text) as priority_reason,
        cast(latest.value_at_risk as numeric(14, 2)) as value_at_risk,
        cast(team_capacity.capacity as integer) as capacity,
        cast(team_capacity.capacity_period as text) as capacity_period
    from latest
    inner join team_capacity
        on latest.rule = team_capacity.rule and latest.subject_id = team_capacity.subject_id
    where latest.as_of_date = latest.latest_date

)

select * from final
