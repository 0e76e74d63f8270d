{#
    `+schema: staging` means exactly the schema `staging`, not
    `<target schema>_staging`: the warehouse schemas (raw, staging,
    intermediate, marts, ...) are fixed and created by the pipeline.
    Without a custom schema, the target's schema is used.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
