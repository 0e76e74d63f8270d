{#
    on-run-start guard. dbt writes each seed's executed SQL to
    <target>/run/<project>/<seed path>; when the seed path is absolute that IS
    the seed's own CSV, which dbt then overwrites with SQL. So the seed folder
    (CXLOOP_SEED_DIR) must be relative to dbt_project/.
#}
{% macro assert_safe_seed_dir() %}
    {%- set seed_dir = env_var('CXLOOP_SEED_DIR', 'seeds') -%}
    {%- if seed_dir.startswith('/') or seed_dir[1:3] == ':\\' or seed_dir[1:3] == ':/' -%}
        {{ exceptions.raise_compiler_error(
            "CXLOOP_SEED_DIR=" ~ seed_dir ~ " is an absolute path: dbt would overwrite the CSV "
            ~ "files there with the SQL it runs for them. Pass the folder relative to dbt_project/ "
            ~ "(e.g. os.path.relpath(folder, 'dbt_project')), or leave it unset for dbt_project/seeds."
        ) }}
    {%- endif -%}
    select 1
{% endmacro %}
