{#
    The date everything is computed "as of", as a SQL date expression.
    From var `run_date` (YYYY-MM-DD, passed by the pipeline); current_date when unset.
    Records with event dates after it are ignored (no look-ahead), so a backfill
    for a past date rebuilds what that date would have seen.
#}
{% macro run_date() -%}
    {%- set value = var('run_date', none) -%}
    {%- if value is none or (value | string | trim) in ('', 'None', 'null') -%}
        current_date
    {%- else -%}
        {%- set text = value | string | trim -%}
        {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', text) -%}
            {{ exceptions.raise_compiler_error("var run_date must be YYYY-MM-DD, got '" ~ text ~ "'") }}
        {%- endif -%}
        cast('{{ text }}' as date)
    {%- endif -%}
{%- endmacro %}
