{#
    The statuses that count as an active subscription, as a SQL list of string
    literals: ('active', 'trial'). From var `active_subscription_statuses`
    (cxloop.yml: subscriptions.active_statuses, passed by the pipeline); values
    are lower-cased like staging's status and quoted, never spliced raw.
#}
{% macro active_subscription_statuses() -%}
    {%- set values = var('active_subscription_statuses', ['active']) -%}
    {%- if values is string -%}
        {%- set values = [values] -%}
    {%- endif -%}
    {%- if values | length == 0 -%}
        {{ exceptions.raise_compiler_error("var active_subscription_statuses is empty: list at least one status") }}
    {%- endif -%}
    (
    {%- for value in values -%}
        '{{ value | string | trim | lower | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
    )
{%- endmacro %}
