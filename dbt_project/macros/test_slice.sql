{#
    Tests of big models check the new slice, not the whole history.

    dbt_project.yml gives the generic tests of staging and intermediate models
    `where: "__new_rows__"`. dbt renders a test's `where` before macros exist, so this
    override of dbt's get_where_subquery replaces the placeholder when the test runs:
      * with the rows the model's last build (re)wrote, `built_at >= <that build's
        time>`, when that build was incremental (ops.dbt_incremental_builds, written by
        the incremental models' post-hooks, macros/incremental_staging.sql): every
        row of a touched key is rewritten, so a key's duplicates, nulls or broken
        references among its own rows are in the slice;
      * with `true` (the full check) in a --full-refresh build, when var `full_tests`
        is true (`cxloop`'s weekly check: dbt build --vars '{full_tests: true}'), or
        for a model that is not incremental (rebuilt whole, so its slice is all of it).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__new_rows__' in where -%}
        {%- set where = where | replace('__new_rows__', test_slice(relation)) -%}
    {%- endif -%}
    {%- if where and where | trim != 'true' -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- The condition picking the rows of the model's last incremental build, or `true`. -#}
{% macro test_slice(relation) -%}
    {%- if not execute or flags.FULL_REFRESH or var('full_tests', false) in (true, 'true', 'True') -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set rows = run_query(
        "select cast(built_at as text) from ops.dbt_incremental_builds "
        ~ "where model = '" ~ relation.identifier ~ "' and not full_build") -%}
    {%- if rows | length == 0 -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return("built_at >= cast('" ~ rows[0][0] ~ "' as timestamptz)") -}}
{%- endmacro %}
