{#
    Intermediates kept incrementally by customer: a nightly build recomputes the rows of
    the customers whose staging rows changed since the model's last build, not a year of
    history (at 1M customers, int_interactions_enriched took 86 s to rebuild whole).

    It fits a model whose rows of a customer depend only on that customer's rows of its
    inputs (joins on customer_id, windows partitioned by customer) and on small
    reference tables (seeds). Its staging ancestors log the customers they touch
    (ops.dbt_touched_customers, written by macros/incremental_staging.sql): the customers
    of the rows a build deletes and of the rows it writes, or one row with a null
    customer for a full build. The model's build deletes its rows of the customers
    logged after its own last build and inserts them again from all their current rows.

    It rebuilds in full when it cannot prove the result equal to a full build: no table
    yet or --full-refresh (dbt's rule), no watermark, a changed fingerprint (the SQL of
    the model, of every model and seed it reads, directly or not, and of the macros they
    call; the dbt vars other than run_date; the session time zone), a run_date earlier
    than the last build's, a full build of a staging ancestor since (its null row), a
    full build of an incremental intermediate ancestor since, or a staging ancestor that
    is not incremental (a view logs nothing).
#}

{#- The models `node` (default: this model) reads, directly or not (unique ids), by
    walking the graph; the walk does not go past the models named in `stop_at`. -#}
{% macro customer_ancestors(node=none, stop_at=[]) -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set seen = [] -%}
    {%- set todo = (node or model).get('depends_on', {}).get('nodes', []) | list -%}
    {#- a breadth-first walk: jinja has no while, so a loop bounded well past any graph -#}
    {%- for _ in range(100000) if todo | length > 0 -%}
        {%- set node_id = todo.pop(0) -%}
        {%- if node_id not in seen and node_id in graph.nodes -%}
            {%- do seen.append(node_id) -%}
            {%- set found = graph.nodes[node_id] -%}
            {%- if (found.alias or found.name) not in stop_at -%}
                {%- do todo.extend(found.get('depends_on', {}).get('nodes', [])) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(seen) -}}
{%- endmacro %}

{#- Staging models among the ancestors (by their folder), as relation names. -#}
{% macro customer_staging_ancestors(ancestors) -%}
    {%- set out = [] -%}
    {%- for node_id in ancestors -%}
        {%- set node = graph.nodes[node_id] -%}
        {%- if node.resource_type == 'model' and node.fqn[1] == 'staging' -%}
            {%- do out.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}

{#- What the result depends on besides the rows: SQL of the model, its ancestors and
    their macros, the vars other than run_date, and the session time zone. -#}
{% macro customer_fingerprint(ancestors) -%}
    {{- return(build_fingerprint(ancestors, 'customer')) -}}
{%- endmacro %}

{#- True when this build can be incremental (the rules above). Asked by the pre-hook,
    the model's SQL and the post-hook of one build: the state it reads does not change
    between them (the watermark is written last, by the post-hook). -#}
{% macro customer_can_increment() -%}
    {%- if not execute or not is_incremental() -%}{{ return(false) }}{%- endif -%}
    {%- set staging_names = customer_staging_ancestors(customer_ancestors())
                            | map(attribute='alias') | list -%}
    {{ return(kept_can_increment(
        "not exists (select 1 from ops.dbt_touched_customers t "
        ~ "where t.model = any(" ~ customer_array(staging_names) ~ ") "
        ~ "and t.built_at > b.built_at and t.customer_id is null)")) }}
{%- endmacro %}

{#- The rules a model kept by customer or by key (macros/incremental_by_key.sql) shares:
    a watermark as of this run_date or earlier, an unchanged fingerprint, no full build
    of an incremental intermediate ancestor since, every staging ancestor incremental and
    with a watermark, and `inputs_whole` (SQL over the watermark row `b`: no input's full
    build since, in the model's own log). -#}
{% macro kept_can_increment(inputs_whole) -%}
    {%- set ancestors = customer_ancestors() -%}
    {%- set staging = customer_staging_ancestors(ancestors) -%}
    {%- for node in staging if node.config.materialized != 'incremental' -%}
        {{ return(false) }}
    {%- endfor -%}
    {%- set intermediates = [] -%}
    {%- for node_id in ancestors -%}
        {%- set node = graph.nodes[node_id] -%}
        {%- if node.resource_type == 'model' and node.fqn[1] != 'staging'
              and node.config.materialized == 'incremental' -%}
            {%- do intermediates.append(node.alias or node.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set staging_names = staging | map(attribute='alias') | list -%}
    {%- set rows = run_query(
        "select b.run_date <= " ~ run_date() ~ " and b.model_checksum = '"
        ~ customer_fingerprint(ancestors) ~ "|' || current_setting('TimeZone') "
        ~ "and " ~ inputs_whole ~ " "
        ~ "and not exists (select 1 from ops.dbt_incremental_builds a "
        ~ "where a.model = any(" ~ customer_array(intermediates) ~ ") "
        ~ "and a.full_build and a.built_at > b.built_at) "
        ~ "and (select count(*) from ops.dbt_incremental_builds s where s.model = any("
        ~ customer_array(staging_names) ~ ")) = " ~ staging_names | length ~ " "
        ~ "from ops.dbt_incremental_builds b where b.model = '" ~ this.identifier ~ "'") -%}
    {{ return(rows | length > 0 and rows[0][0]) }}
{%- endmacro %}

{#- Post-hook part both kinds share: each column's index when missing, and built_at's
    (the tests' slice, macros/test_slice.sql), the watermark with the
    fingerprint, `log_table` pruned to what the oldest model of `kind` still needs, and
    statistics after a full build. -#}
{% macro kept_record_build(columns, full, log_table, kind) -%}
    {{ ensure_indexes(columns + ['built_at']) }};
    {{ record_watermark(full, customer_fingerprint(customer_ancestors())) }};
    delete from {{ log_table }}
    where built_at < (
        select min(built.built_at) from ops.dbt_incremental_builds as built
        where built.model = any({{ customer_array(kept_models(kind) | map(attribute='alias') | list) }})
    )
    {%- if full -%}
    ;
    analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{% macro customer_array(names) -%}
    {%- if names | length == 0 -%}cast(array[] as text[]){%- else -%}
    array['{{ names | join("', '") }}']
    {%- endif -%}
{%- endmacro %}

{% macro customer_touched_relation() -%}
    "{{ this.identifier }}__touched_customers"
{%- endmacro %}

{#- The customers to rebuild, as a temporary table: those the staging ancestors logged
    since this model's last build, and those of `also` (a query of customer ids to add,
    as `union select ...`). -#}
{% macro customer_touched_ddl(also='') -%}
    {%- set staging_names = customer_staging_ancestors(customer_ancestors())
                            | map(attribute='alias') | list -%}
    create temporary table {{ customer_touched_relation() }} on commit drop as
    select distinct touched.customer_id
    from ops.dbt_touched_customers as touched
    where
        touched.model = any({{ customer_array(staging_names) }})
        and touched.customer_id is not null
        and touched.built_at > (
            select built.built_at from ops.dbt_incremental_builds as built
            where built.model = '{{ this.identifier }}'
        )
    {{ also }};
    analyze {{ customer_touched_relation() }}
{%- endmacro %}

{#- Pre-hook: the customers to rebuild, and their rows gone; a full build over an
    existing table empties it. -#}
{% macro customer_forget_touched() -%}
    {%- if is_incremental() -%}
        {%- if customer_can_increment() -%}
    {{ customer_touched_ddl() }};
    {{ key_log_values(customer_rows_touched()) }};
    delete from {{ this }} as kept
    using {{ customer_touched_relation() }} as touched
    where kept.customer_id = touched.customer_id
        {%- else %}
    truncate {{ this }}
        {%- endif -%}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#- In the model's inputs: only the touched customers, when the build is incremental.
    `clause`: 'where' or 'and', as the input's query needs. -#}
{% macro customer_only_touched(column, clause='where') -%}
    {%- if customer_can_increment() -%}
    {{ clause }} {{ column }} in (select touched.customer_id from {{ customer_touched_relation() }} as touched)
    {%- endif -%}
{%- endmacro %}

{#- The rows of the touched customers, as a FROM clause for key_log_values: a model kept
    by key may link on this one (mart_customer_journeys on int_interactions_enriched's
    interaction_id), so the pre-hook logs the rows about to go and the post-hook the rows
    written; key_log_values logs nothing when no model links on this one. -#}
{% macro customer_rows_touched() -%}
    (
        select kept.* from {{ this }} as kept
        where kept.customer_id in (
            select touched.customer_id from {{ customer_touched_relation() }} as touched
        )
    ) as logged_rows
{%- endmacro %}

{#- Post-hook: the values of the rows written for the models kept by key that link on this
    one (a null after a full build), the watermark (in the model's transaction),
    statistics after a full build, and the log pruned to what the oldest reader still
    needs. -#}
{% macro record_customer_build() -%}
    {%- set full = not customer_can_increment() -%}
    {{ key_log_values(customer_rows_touched() if not full else none, full) }};
    {{ kept_record_build(['customer_id'], full,
                         'ops.dbt_touched_customers', 'customer_id') }}
{%- endmacro %}

{#- The config of a model kept by customer: config(**customer_incremental()). -#}
{% macro customer_incremental() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'sync_all_columns',
        'indexes': [{'columns': ['customer_id']}],
        'meta': {'incremental_by': 'customer_id'},
        'pre_hook': ["{{ customer_forget_touched() }}"],
        'post_hook': ["{{ record_customer_build() }}"],
    }) }}
{%- endmacro %}

{#- The intermediates' project-wide post-hook: fresh tables get statistics; a model kept
    incrementally analyzes after a full build only (its own post-hook), since analyze of
    a 10M-row table on every nightly costs more than the rows it adds change. -#}
{% macro analyze_unless_incremental() -%}
    {%- if config.get('materialized') == 'incremental' -%}select 1{%- else -%}analyze {{ this }}{%- endif -%}
{%- endmacro %}

{#- The models kept by customer, as graph nodes. -#}
{% macro customer_readers() -%}
    {{- return(kept_models('customer_id')) -}}
{%- endmacro %}

{#- The models whose meta incremental_by is `kind` ('customer_id' or 'key'). -#}
{% macro kept_models(kind) -%}
    {%- set out = [] -%}
    {%- for node in (graph.nodes.values() if execute else []) if node.resource_type == 'model'
            and node.config.get('meta', {}).get('incremental_by') == kind -%}
        {%- do out.append(node) -%}
    {%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}

{#- True when a model kept by customer reads this (staging) model, directly or not: only
    then does its build log the customers it touches (nothing else reads or prunes the
    log). -#}
{% macro customer_log_wanted() -%}
    {%- for reader in customer_readers() -%}
        {%- if model.unique_id in customer_ancestors(reader) -%}{{ return(true) }}{%- endif -%}
    {%- endfor -%}
    {{- return(false) -}}
{%- endmacro %}
