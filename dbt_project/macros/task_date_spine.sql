{#
    The dates task candidates are built for, as a select of one as_of_date per day:
    from var `task_dates_from` (a backfill's first date; unset = run_date) to run_date.
    Inlined (not a ref of int_task_dates) so a rule's model rebuilt alone, as the
    intra-day alerts run does, holds candidates for its own run_date.
#}
{% macro task_date_spine() -%}
    {%- set dates_from = var('task_dates_from', none) | string | trim -%}
    {%- if dates_from in ('', 'None', 'null', 'none') -%}
        {%- set first_date = run_date() -%}
    {%- elif modules.re.match('^\d{4}-\d{2}-\d{2}$', dates_from) -%}
        {%- set first_date = "least(cast('" ~ dates_from ~ "' as date), " ~ run_date() ~ ")" -%}
    {%- else -%}
        {{ exceptions.raise_compiler_error("var task_dates_from must be YYYY-MM-DD, got '" ~ dates_from ~ "'") }}
    {%- endif -%}
    select cast(spine.as_of_date as date) as as_of_date
    from generate_series({{ first_date }}, {{ run_date() }}, interval '1 day') as spine (as_of_date)
{%- endmacro %}
