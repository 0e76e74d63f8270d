-- The dates the task candidates are built for, one row each: from var
-- `task_dates_from` (the first date of a backfill, passed by the pipeline) to
-- run_date; a nightly run has the one date. Rules that look back (tasks.yml
-- `backfill: each_date`) give candidates for every date here, so a backfill
-- derives the tasks each night would have; the task stage reads this to know
-- which dates it may derive.
{%- set dates_from = var('task_dates_from', none) | string | trim %}
{%- if dates_from in ('', 'None', 'null', 'none') %}
{%- set first_date = run_date() %}
{%- elif modules.re.match('^\d{4}-\d{2}-\d{2}$', dates_from) %}
{%- set first_date = "least(cast('" ~ dates_from ~ "' as date), " ~ run_date() ~ ")" %}
{%- else %}
{{ exceptions.raise_compiler_error("var task_dates_from must be YYYY-MM-DD, got '" ~ dates_from ~ "'") }}
{%- endif %}
with

bounds as (

    select
        {{ first_date }} as first_date,
        {{ run_date() }} as last_date

),

final as (

    select cast(spine.as_of_date as date) as as_of_date
    from bounds
    cross join lateral generate_series(
        bounds.first_date, bounds.last_date, interval '1 day'
    ) as spine (as_of_date)

)

select * from final
