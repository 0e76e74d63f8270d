{#
    dbt sources take their schema from the source, not the table; the
    python_outputs tables live in two schemas (marts.churn_scores,
    intermediate.py_driver_importance). A source table may therefore set
    `config: {meta: {schema: <schema>}}` to override its source's schema.
#}
{% macro source(source_name, table_name) %}
    {%- set relation = builtins.source(source_name, table_name) -%}
    {%- if execute -%}
        {%- for node in graph.get('sources', {}).values() -%}
            {%- if node.source_name == source_name and node.name == table_name
                and node.meta.get('schema') -%}
                {%- set relation = relation.incorporate(path={'schema': node.meta['schema']}) -%}
                {{ return(relation) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(relation) }}
{% endmacro %}
