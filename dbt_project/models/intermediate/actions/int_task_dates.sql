-- The dates the task candidates are built for, one row each: from var
-- `task_dates_from` (the first date of a backfill, passed by the pipeline) to
-- run_date; a nightly run has the one date (macro task_date_spine, which the
-- look-back rules' models inline). Rules that look back (tasks.yml `backfill:
-- each_date`) give candidates for every date here, so a backfill derives the
-- tasks each night would have; the task stage reads this to know which dates
-- it may derive (and clear) them for.
with

spine as (

    {{ task_date_spine() }}

),

final as (

    select cast(as_of_date as date) as as_of_date
    from spine

)

select * from final
