{#
    Order of the raw copies of one record, latest first. The same key can
    arrive in several batches (re-exports, attribute updates, re-delivered
    files): the latest extract wins, then the latest load, then the last row of
    the file. Staging keeps the first row per key:
        select distinct on (<key>) * from source order by <key>, {{ latest_first() }}
    (distinct on lets the planner estimate the row count from the key's
    statistics, which keeps joins between staging views on hash joins.)
    Only current deliveries are in raw: a batch a correction replaced (a
    re-delivered day, flows/corrections.py) is detached from raw into
    raw_superseded, so its rows, including the ones the correction removed,
    are never read here and no status filter is needed.
#}
{% macro latest_first() -%}
    _extract_date desc, _loaded_at desc, _row_number desc
{%- endmacro %}

{#
    The raw rows visible on run_date: batches extracted up to run_date whose
    event happened up to run_date (written as a range so statistics apply).
#}
{% macro as_of_run_date(event_column) -%}
    _extract_date <= {{ run_date() }}
    and {{ event_column }} < {{ run_date() }} + 1
{%- endmacro %}
