{#
    Rank of a raw row among the versions of the same record (1 = the one to keep).
    The same key can arrive in several batches (re-exports, attribute updates,
    re-delivered files): the latest extract wins, then the latest load, then the
    last row of the file.
#}
{% macro latest_version_rank(partition_by) -%}
    row_number() over (
        partition by {{ partition_by }}
        order by _extract_date desc, _loaded_at desc, _row_number desc
    )
{%- endmacro %}

{#
    The raw rows visible on run_date: batches extracted up to run_date whose
    event happened up to run_date.
#}
{% macro as_of_run_date(event_column) -%}
    _extract_date <= {{ run_date() }}
    and cast({{ event_column }} as date) <= {{ run_date() }}
{%- endmacro %}
