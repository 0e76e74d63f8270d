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
      * for a source (raw) table, with the batches not yet built from
        (source_test_slice below);
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
    {%- set source_id = tested_source(relation) -%}
    {%- if source_id is not none -%}
        {{- return(source_test_slice(relation, source_id)) -}}
    {%- endif -%}
    {%- set rows = run_query(
        "select cast(built_at as text) from ops.dbt_incremental_builds "
        ~ "where model = '" ~ relation.identifier ~ "' and not full_build") -%}
    {%- if rows | length == 0 -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return("built_at >= cast('" ~ rows[0][0] ~ "' as timestamptz)") -}}
{%- endmacro %}

{#- The unique id of the source a test reads, when `relation` is one (else none). -#}
{% macro tested_source(relation) -%}
    {%- for dep in model.depends_on.nodes if dep.startswith('source.') -%}
        {%- set src = graph.sources[dep] -%}
        {%- if src.identifier == relation.identifier and src.schema == relation.schema -%}
            {{- return(dep) -}}
        {%- endif -%}
    {%- endfor -%}
    {{- return(none) -}}
{%- endmacro %}

{#-
    A raw table's slice: the rows of the batches (raw is list-partitioned by _batch_id,
    so the literal list prunes to their partitions) that some incremental model reading
    the table has not built from yet. Tests on sources run before those models in a
    dbt build, so these are the rows no earlier build has tested; a batch whose row
    count changed (a quarantine replay) counts as new. The full check (`true`) when no
    incremental model reads the table, one of them has no watermark yet (a first build
    tests every row), or the entity has no batches on record under this name.
-#}
{% macro source_test_slice(relation, source_id) -%}
    {%- set readers = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model'
            and source_id in node.get('depends_on', {}).get('nodes', [])
            and node.config.materialized == 'incremental' -%}
        {%- do readers.append(node.alias or node.name) -%}
    {%- endfor -%}
    {%- if readers | length == 0 -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set names = "array['" ~ readers | join("', '") ~ "']" -%}
    {%- set entity = relation.identifier | replace("'", "''") -%}
    {%- set rows = run_query(
        "select (select count(*) from ops.dbt_incremental_builds where model = any(" ~ names ~ ")), "
        ~ "(select count(*) from " ~ source('ingestion', 'load_batches')
        ~ " where entity = '" ~ entity ~ "'), "
        ~ "(select count(*) || ':' || coalesce(string_agg(quote_literal(b.batch_id), ', ' "
        ~ "order by b.batch_id), '') from " ~ source('ingestion', 'load_batches') ~ " b "
        ~ "where b.entity = '" ~ entity ~ "' and b.status = 'loaded' "
        ~ "and exists (select 1 from unnest(" ~ names ~ ") as m (model) where not exists ("
        ~ "select 1 from ops.dbt_incremental_batches s where s.model = m.model "
        ~ "and s.batch_id = b.batch_id and s.rows_loaded is not distinct from b.rows_loaded)))") -%}
    {%- set watermarks, batches = rows[0][0], rows[0][1] -%}
    {%- set unseen, listed = rows[0][2].split(':', 1)[0] | int, rows[0][2].split(':', 1)[1] -%}
    {%- if watermarks < readers | length or batches == 0 or unseen > 5000 -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- if unseen == 0 -%}
        {{- return('false') -}}
    {%- endif -%}
    {{- return("_batch_id in (" ~ listed ~ ")") -}}
{%- endmacro %}
