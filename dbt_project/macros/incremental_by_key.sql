{#
    Intermediates kept incrementally by their links: a nightly build recomputes the rows
    that its changed inputs reach, not a year of history (at 1M customers,
    int_invitations_enriched took 74 s to rebuild whole; a night touches some 25k of its
    7.8M rows).

    A model kept by customer (macros/incremental_by_customer.sql) cannot take a model
    that joins other entities by their own keys: a response may be filed under another
    customer than its invitation. A model kept by key names its links instead,
    config(**key_incremental(key, links)), each link
    (input model, input column, own column), the first naming the driving input (the
    one read through the condition, which gets an index on each own column): the rows
    of the input model that a build
    deletes or writes log their values of the input column (ops.dbt_touched_values,
    written by the staging hooks, macros/incremental_staging.sql, and by the hooks
    below for a kept intermediate); the model rebuilds its rows whose own column holds
    one of those values, and reads its driving input through the same condition. The
    own column must be the driving input row's own value (its key, its customer, the
    key of the row it names), so a row whose value changed is reached by the link on
    the driving input's own key. Every staging model the model reads, directly or
    through intermediates that are not linked themselves, must be an input of some
    link: a model that reads one without a link fails to compile.

    It rebuilds in full, like a model kept by customer, when it cannot prove the result
    equal to a full build: no table yet or --full-refresh, no watermark, a changed
    fingerprint (SQL of the model, its ancestors and their macros, vars, time zone), an
    earlier run_date, an input's full build since (its null value), a full build of an
    incremental intermediate ancestor since, or a staging ancestor that is not
    incremental.
#}

{#- The config of a model kept by key: config(**key_incremental(key, links)).
    `on_schema_change`: a contracted mart needs 'append_new_columns' (dbt's rule);
    `pre_hooks`: more pre-hooks, run after the model's own. -#}
{% macro key_incremental(key, links, on_schema_change='sync_all_columns', pre_hooks=[]) -%}
    {%- set indexed = [key] -%}
    {%- for link in links if link[2] not in indexed -%}
        {%- do indexed.append(link[2]) -%}
    {%- endfor -%}
    {#- each own column indexed: the rows to rebuild are found by index, not by a scan -#}
    {%- set indexes = [] -%}
    {%- for column in indexed -%}
        {%- do indexes.append({'columns': [column]}) -%}
    {%- endfor -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': on_schema_change,
        'indexes': indexes,
        'meta': {'incremental_by': 'key', 'key': key, 'links': links},
        'pre_hook': ["{{ key_forget_touched() }}"] + pre_hooks,
        'post_hook': ["{{ record_key_build() }}"],
    }) }}
{%- endmacro %}

{#- The models kept by key, as graph nodes. -#}
{% macro key_readers() -%}
    {{- return(kept_models('key')) -}}
{%- endmacro %}

{#- The columns of model `name` that some model kept by key links on: what its builds
    log for the rows they delete and write. -#}
{% macro key_logged_columns(name) -%}
    {%- set out = [] -%}
    {%- for reader in key_readers() -%}
        {%- for link in reader.config.meta.links if link[0] == name and link[1] not in out -%}
            {%- do out.append(link[1]) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}

{#- This model's links and the distinct own columns they reach. -#}
{% macro key_links() -%}
    {{- return(model.config.get('meta', {}).get('links', [])) -}}
{%- endmacro %}

{% macro key_own_columns() -%}
    {%- set out = [] -%}
    {%- for link in key_links() if link[2] not in out -%}
        {%- do out.append(link[2]) -%}
    {%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}

{#- Every staging model read, directly or through models no link names, is the input of
    a link: a forgotten input would leave its changes unseen. -#}
{% macro key_check_links() -%}
    {%- set linked = key_links() | map(attribute=0) | list -%}
    {%- for node_id in customer_ancestors(stop_at=linked) -%}
        {%- set node = graph.nodes[node_id] -%}
        {%- if node.resource_type == 'model' and node.fqn[1] == 'staging'
              and (node.alias or node.name) not in linked -%}
            {%- do exceptions.raise_compiler_error(
                model.name ~ " is kept by key but reads " ~ node.name
                ~ " without a link on it (key_incremental links)") -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}

{#- The links as a VALUES list: (model, column_name, own_column). -#}
{% macro key_links_values() -%}
    (values
    {%- for link in key_links() %}
        ('{{ link[0] }}', '{{ link[1] }}', '{{ link[2] }}'){{ ',' if not loop.last }}
    {%- endfor %}
    ) as links (model, column_name, own_column)
{%- endmacro %}

{#- True when this build can be incremental (the rules above). The links are checked on
    every build, the first included, so a missing one fails before any night relies on it. -#}
{% macro key_can_increment() -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- do key_check_links() -%}
    {%- if not is_incremental() -%}{{ return(false) }}{%- endif -%}
    {{ return(kept_can_increment(
        "not exists (select 1 from ops.dbt_touched_values t inner join "
        ~ key_links_values() ~ " on t.model = links.model and t.column_name = links.column_name "
        ~ "where t.built_at > b.built_at and t.value is null)")) }}
{%- endmacro %}

{#- The driving input: the first link's input model. -#}
{% macro key_driving_input() -%}
    {{- return(ref(key_links()[0][0])) -}}
{%- endmacro %}

{% macro key_touched_relation() -%}
    "{{ this.identifier }}__touched_values"
{%- endmacro %}

{#- `alias`'s row (none: the one table read) is one to rebuild: one of its own columns
    holds a touched value (`= any(array(...))`, so each column's index serves its part). -#}
{% macro key_touched_condition(alias=none) -%}
    (
    {%- for column in key_own_columns() %}
        {{ 'or ' if not loop.first }}{{ alias ~ '.' if alias }}{{ column }} = any(array(
            select touched.value from {{ key_touched_relation() }} as touched
            where touched.own_column = '{{ column }}'
        ))
    {%- endfor %}
    )
{%- endmacro %}

{#- In the model's driving input: only the rows to rebuild, when the build is incremental.
    `clause`: 'where' or 'and', as the input's query needs. -#}
{% macro key_only_touched(alias=none, clause='where') -%}
    {%- if key_can_increment() -%}
    {{ clause }} {{ key_touched_condition(alias) }}
    {%- endif -%}
{%- endmacro %}

{#- Log, for the columns this model's readers link on, the values of the rows `rows_from`
    yields (a FROM clause naming them `logged_rows`); a null for each after a full build. -#}
{% macro key_log_values(rows_from, full=false) -%}
    {%- set columns = key_logged_columns(this.identifier) -%}
    {%- if columns | length == 0 -%}select 1{%- elif full -%}
    insert into ops.dbt_touched_values (model, built_at, column_name, value)
    select '{{ this.identifier }}', now(), logged.column_name, null
    from unnest(array['{{ columns | join("', '") }}']) as logged (column_name)
    {%- else -%}
    insert into ops.dbt_touched_values (model, built_at, column_name, value)
    select distinct '{{ this.identifier }}', now(), logged.column_name, logged.value
    from {{ rows_from }}
    cross join lateral (
        values
        {%- for column in columns %}
            ('{{ column }}', cast(logged_rows.{{ column }} as text)){{ ',' if not loop.last }}
        {%- endfor %}
    ) as logged (column_name, value)
    where logged.value is not null
    {%- endif -%}
{%- endmacro %}

{#- This model's rows to rebuild, as a FROM clause for key_log_values: the pre-hook logs
    the rows about to go, the post-hook the rows written (the same condition picked them). -#}
{% macro key_rows_touched() -%}
    (select * from {{ this }} as kept where {{ key_touched_condition('kept') }}) as logged_rows
{%- endmacro %}

{#- Pre-hook: the values to rebuild from; the values of the rows about to go, for this
    model's own readers; those rows gone. A full build over an existing table empties it. -#}
{% macro key_forget_touched() -%}
    {%- if is_incremental() -%}
        {%- if key_can_increment() -%}
    create temporary table {{ key_touched_relation() }} on commit drop as
    select distinct
        links.own_column,
        touched.value
    from ops.dbt_touched_values as touched
    inner join {{ key_links_values() }}
        on touched.model = links.model and touched.column_name = links.column_name
    where
        touched.value is not null
        and touched.built_at > (
            select built.built_at from ops.dbt_incremental_builds as built
            where built.model = '{{ this.identifier }}'
        );
    analyze {{ key_touched_relation() }};
    -- the driving input read through the own columns' condition: an OR of `= any(...)`
    -- finds its rows through an index per column, or reads the whole table (43 s for the
    -- 7.8M invitations at 1M customers, to find nothing)
    {{ ensure_indexes(key_own_columns(), key_driving_input()) }};
    {{ key_log_values(key_rows_touched()) }};
    delete from {{ this }} as kept
    where {{ key_touched_condition('kept') }}
        {%- else %}
    truncate {{ this }}
        {%- endif -%}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the values of the rows written (every row's column after a full build:
    a null), the watermark, statistics after a full build, and the log pruned to what
    the oldest model kept by key still needs. -#}
{% macro record_key_build() -%}
    {%- set full = not key_can_increment() -%}
    {{ key_log_values(key_rows_touched(), full) }};
    {{ kept_record_build([model.config.meta.key] + key_own_columns(), full,
                         'ops.dbt_touched_values', 'key') }}
{%- endmacro %}
