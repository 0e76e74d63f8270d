{#
    The first of `candidates` that `relation` has as a column, or none: lets a model use an
    optional extract column (e.g. a subscription's renewal date) when a source carries it
    and stay null-safe when it does not.
#}
{% macro first_present_column(relation, candidates) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {%- for candidate in candidates -%}
        {%- if candidate in present -%}
            {{ return(candidate) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}
