{{ config(materialized='table', tags=['after_python']) }}
-- Did the fixes work? For every rule x owner team x measure: the tasks people
-- resolved (status done or resolved), the subject's measure before and after,
-- against comparable subjects without a task, with n and a 95 % interval
-- (normal approximation). A table, rebuilt by every run after its task stage
-- (transform.AFTER_TASKS; as a view, each read and test re-joined every task
-- with every response: 23 min for one test at 1M customers), so a task resolved
-- before the run counts in it; rows exist for every rule and owner with tasks
-- (n_resolved may be 0). Touchpoint windows add up CSAT per touchpoint and day,
-- and a customer's answers before and after are found by joining the measured
-- customers' answers, not by a look-up per task in all responses.
--   csat_change (touchpoints)  mean CSAT of the touchpoint's answers in the
--       `window` days after the task was closed minus the `window` days before
--       it was opened; control: the same windows at touchpoints that never had
--       a task of the rule (difference in differences).
--   nps_change (customers)     the NPS of the task's recovery-survey answer
--       (int_task_recovery_answers: the response to the invitation written when
--       the task was resolved) or, without one, the customer's first NPS after
--       closure, minus the last NPS before the task; control: customers whose task
--       of the same rule was suppressed (same trigger, no contact), measured from
--       the task date. effect_source says which answers measured a group.
--   retained (customers)       share still customers `window` days after closure
--       (only tasks with that much follow-up); control as for nps_change.
-- The control is not randomised: suppressed customers lack consent or were
-- contacted often, so read the effect as a signal, not a proof.
{% set window = var('task_effect_window_days', 30) %}
with

tasks as (

    select * from {{ source('ops', 'improvement_tasks') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}
    where response_date <= {{ run_date() }}

),

customers as (

    select * from {{ ref('mart_customer_360') }}

),

-- narrow: one row per answered recovery survey, never the whole response history
recovery_answers as (

    select * from {{ ref('int_task_recovery_answers') }}

),

task_groups as (

    select distinct
        rule,
        subject_type,
        owner_team
    from tasks
    where subject_type in ('touchpoint', 'customer')

),

group_counts as (

    select
        rule,
        owner_team,
        count(*) as n_tasks,
        count(*) filter (where status in ('done', 'resolved')) as n_resolved
    from tasks
    group by rule, owner_team

),

measures as (

    select
        'touchpoint' as subject_type,
        'csat_change' as measure
    union all
    select
        'customer' as subject_type,
        'nps_change' as measure
    union all
    select
        'customer' as subject_type,
        'retained' as measure

),

-- the subjects measured: resolved tasks (treated) and, for customers, suppressed
-- tasks of the same rule (control); reference_on starts the "after" window
measured_tasks as (

    select
        task_id,
        rule,
        subject_type,
        subject_id,
        owner_team,
        status in ('done', 'resolved') as is_treated,
        cast(created_at as date) as opened_on,
        case
            when status = 'suppressed' then cast(created_at as date)
            else cast(coalesce(closed_at, updated_at) as date)
        end as reference_on
    from tasks
    where
        status in ('done', 'resolved')
        or (status = 'suppressed' and subject_type = 'customer')

),

tasked_touchpoints as (

    select distinct
        rule,
        subject_id as touchpoint_code
    from tasks
    where subject_type = 'touchpoint'

),

-- CSAT per touchpoint and day (count, sum, sum of squares): the windows below add up
-- days, so each task joins a few hundred day rows, never every response
touchpoint_days as (

    select
        touchpoint_code,
        response_date,
        count(*) as n_answers,
        sum(cast(csat as numeric)) as csat_sum,
        sum(cast(csat as numeric) * csat) as csat_squares
    from responses
    where csat is not null
    group by touchpoint_code, response_date

),

-- each resolved touchpoint task's days before and after, at the touchpoint itself
-- and at the touchpoints that never had a task of the rule
touchpoint_answers as (

    select
        measured_tasks.task_id,
        measured_tasks.rule,
        measured_tasks.owner_team,
        touchpoint_days.touchpoint_code = measured_tasks.subject_id as is_subject,
        touchpoint_days.response_date > measured_tasks.reference_on as is_after,
        touchpoint_days.n_answers,
        touchpoint_days.csat_sum,
        touchpoint_days.csat_squares
    from measured_tasks
    inner join touchpoint_days
        on
            (
                measured_tasks.opened_on - {{ window }} <= touchpoint_days.response_date
                and measured_tasks.opened_on > touchpoint_days.response_date
            )
            or (
                measured_tasks.reference_on < touchpoint_days.response_date
                and measured_tasks.reference_on + {{ window }} >= touchpoint_days.response_date
            )
    left join tasked_touchpoints
        on
            measured_tasks.rule = tasked_touchpoints.rule
            and touchpoint_days.touchpoint_code = tasked_touchpoints.touchpoint_code
    where
        measured_tasks.subject_type = 'touchpoint'
        and (
            touchpoint_days.touchpoint_code = measured_tasks.subject_id
            or tasked_touchpoints.touchpoint_code is null
        )

),

touchpoint_sums as (

    select
        task_id,
        rule,
        owner_team,
        is_subject,
        coalesce(sum(n_answers) filter (where not is_after), 0) as n_before,
        coalesce(sum(n_answers) filter (where is_after), 0) as n_after,
        sum(csat_sum) filter (where not is_after) as sum_before,
        sum(csat_sum) filter (where is_after) as sum_after,
        sum(csat_squares) filter (where not is_after) as squares_before,
        sum(csat_squares) filter (where is_after) as squares_after
    from touchpoint_answers
    group by task_id, rule, owner_team, is_subject

),

-- means and sample variances from the sums (a variance needs two answers, else 0)
touchpoint_windows as (

    select
        task_id,
        rule,
        owner_team,
        is_subject,
        n_before,
        n_after,
        sum_before / nullif(n_before, 0) as mean_before,
        sum_after / nullif(n_after, 0) as mean_after,
        case
            when n_before > 1
                then (squares_before - sum_before * sum_before / n_before) / (n_before - 1)
            else 0
        end as var_before,
        case
            when n_after > 1
                then (squares_after - sum_after * sum_after / n_after) / (n_after - 1)
            else 0
        end as var_after
    from touchpoint_sums

),

touchpoint_task_effects as (

    select
        subject.task_id,
        subject.rule,
        subject.owner_team,
        subject.mean_before,
        subject.mean_after,
        subject.n_after,
        control.mean_before as control_before,
        control.mean_after as control_after,
        control.n_after as control_n,
        (subject.mean_after - subject.mean_before)
        - (control.mean_after - control.mean_before) as effect,
        subject.var_before / subject.n_before + subject.var_after / subject.n_after
        + control.var_before / control.n_before + control.var_after / control.n_after as effect_variance
    from touchpoint_windows as subject
    inner join touchpoint_windows as control
        on subject.task_id = control.task_id and not control.is_subject
    where
        subject.is_subject
        and subject.n_before > 0 and subject.n_after > 0
        and control.n_before > 0 and control.n_after > 0

),

touchpoint_effects as (

    select
        rule,
        owner_team,
        'csat_change' as measure,
        count(*) as n_measured,
        sum(n_after) as n_observations,
        0 as n_recovery_answers,
        avg(mean_before) as treated_before,
        avg(mean_after) as treated_after,
        avg(control_before) as control_before,
        avg(control_after) as control_after,
        sum(control_n) as n_control,
        avg(effect) as effect,
        sqrt(sum(effect_variance)) / count(*) as effect_se
    from touchpoint_task_effects
    group by rule, owner_team

),

-- customers: the last NPS before the task, the first after the reference date,
-- and whether they were still customers `window` days after it
customer_tasks as (

    select * from measured_tasks
    where subject_type = 'customer'

),

-- the NPS answers of the measured customers only, joined by customer (a hash join),
-- not looked up task by task in the whole response history
customer_nps as (

    select
        customer_id,
        response_id,
        response_date,
        responded_at,
        nps
    from responses
    where
        nps is not null
        and customer_id in (select customer_tasks.subject_id from customer_tasks)

),

nps_before as (

    select distinct on (customer_tasks.task_id)
        customer_tasks.task_id,
        customer_nps.nps
    from customer_tasks
    inner join customer_nps
        on
            customer_tasks.subject_id = customer_nps.customer_id
            and customer_tasks.opened_on > customer_nps.response_date
    order by
        customer_tasks.task_id asc,
        customer_nps.responded_at desc,
        customer_nps.response_id desc

),

nps_after as (

    select distinct on (customer_tasks.task_id)
        customer_tasks.task_id,
        customer_nps.nps
    from customer_tasks
    inner join customer_nps
        on
            customer_tasks.subject_id = customer_nps.customer_id
            and customer_tasks.reference_on < customer_nps.response_date
    order by
        customer_tasks.task_id asc,
        customer_nps.responded_at asc,
        customer_nps.response_id asc

),

customer_outcomes as (

    select
        customer_tasks.task_id,
        customer_tasks.rule,
        customer_tasks.owner_team,
        customer_tasks.is_treated,
        nps_before.nps as nps_before,
        coalesce(recovery_answers.recovery_nps, nps_after.nps) as nps_after,
        coalesce(recovery_answers.recovery_nps is not null, false) as is_recovery_answer,
        case
            when customer_tasks.reference_on + {{ window }} > {{ run_date() }} then null
            when customers.churned_on <= customer_tasks.reference_on + {{ window }} then 0.0
            else 1.0
        end as retained
    from customer_tasks
    left join customers
        on customer_tasks.subject_id = customers.customer_id
    left join recovery_answers
        on
            customer_tasks.task_id = recovery_answers.task_id
            and customer_tasks.is_treated
    left join nps_before
        on customer_tasks.task_id = nps_before.task_id
    left join nps_after
        on customer_tasks.task_id = nps_after.task_id

),

customer_measures as (

    select
        task_id,
        rule,
        owner_team,
        is_treated,
        'nps_change' as measure,
        is_recovery_answer,
        cast(nps_before as double precision) as value_before,
        cast(nps_after as double precision) as value_after,
        cast(nps_after - nps_before as double precision) as value_change
    from customer_outcomes
    where nps_before is not null and nps_after is not null

    union all

    select
        task_id,
        rule,
        owner_team,
        is_treated,
        'retained' as measure,
        false as is_recovery_answer,
        null as value_before,
        retained as value_after,
        retained as value_change
    from customer_outcomes
    where retained is not null

),

customer_treated as (

    select
        rule,
        owner_team,
        measure,
        count(*) as n_measured,
        count(*) as n_observations,
        avg(value_before) as treated_before,
        avg(value_after) as treated_after,
        count(*) filter (where is_recovery_answer) as n_recovery_answers,
        avg(value_change) as mean_change,
        coalesce(var_samp(value_change), 0) / count(*) as change_variance
    from customer_measures
    where is_treated
    group by rule, owner_team, measure

),

customer_control as (

    select
        rule,
        measure,
        count(*) as n_control,
        avg(value_before) as control_before,
        avg(value_after) as control_after,
        avg(value_change) as mean_change,
        coalesce(var_samp(value_change), 0) / count(*) as change_variance
    from customer_measures
    where not is_treated
    group by rule, measure

),

customer_effects as (

    select
        customer_treated.rule,
        customer_treated.owner_team,
        customer_treated.measure,
        customer_treated.n_measured,
        customer_treated.n_observations,
        customer_treated.n_recovery_answers,
        customer_treated.treated_before,
        customer_treated.treated_after,
        customer_control.control_before,
        customer_control.control_after,
        customer_control.n_control,
        customer_treated.mean_change - customer_control.mean_change as effect,
        sqrt(customer_treated.change_variance + customer_control.change_variance) as effect_se
    from customer_treated
    left join customer_control
        on
            customer_treated.rule = customer_control.rule
            and customer_treated.measure = customer_control.measure

),

effects as (

    select * from touchpoint_effects
    union all
    select * from customer_effects

),

final as (

    select
        cast(task_groups.rule || '|' || task_groups.owner_team || '|' || measures.measure as text) as effect_key,
        cast(task_groups.rule as text) as rule_name,
        cast(task_groups.subject_type as text) as subject_type,
        cast(task_groups.owner_team as text) as owner_team,
        cast(measures.measure as text) as measure,
        cast(group_counts.n_tasks as integer) as n_tasks,
        cast(group_counts.n_resolved as integer) as n_resolved,
        cast(coalesce(effects.n_measured, 0) as integer) as n_measured,
        cast(coalesce(effects.n_observations, 0) as integer) as n_observations,
        cast(coalesce(effects.n_recovery_answers, 0) as integer) as n_recovery_answers,
        cast(
            case
                when coalesce(effects.n_measured, 0) = 0 then null
                when measures.measure = 'csat_change' then 'touchpoint_answers'
                when measures.measure = 'retained' then 'customer_status'
                when effects.n_recovery_answers = effects.n_measured then 'recovery_survey'
                when effects.n_recovery_answers = 0 then 'later_answers'
                else 'mixed'
            end as text
        ) as effect_source,
        cast(coalesce(effects.n_control, 0) as integer) as n_control,
        cast(effects.treated_before as double precision) as treated_before,
        cast(effects.treated_after as double precision) as treated_after,
        cast(effects.control_before as double precision) as control_before,
        cast(effects.control_after as double precision) as control_after,
        cast(effects.effect as double precision) as effect,
        cast(effects.effect - 1.96 * effects.effect_se as double precision) as effect_low,
        cast(effects.effect + 1.96 * effects.effect_se as double precision) as effect_high,
        cast(
            coalesce(
                effects.effect - 1.96 * effects.effect_se > 0
                or effects.effect + 1.96 * effects.effect_se < 0,
                false
            ) as boolean
        ) as effect_is_clear,
        cast({{ window }} as integer) as window_days,
        cast({{ run_date() }} as date) as measured_as_of
    from task_groups
    inner join measures
        on task_groups.subject_type = measures.subject_type
    inner join group_counts
        on task_groups.rule = group_counts.rule and task_groups.owner_team = group_counts.owner_team
    left join effects
        on
            task_groups.rule = effects.rule
            and task_groups.owner_team = effects.owner_team
            and measures.measure = effects.measure

)

select * from final
