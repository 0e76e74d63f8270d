{#
    A threshold of a task rule: tasks.yml `rules[].params` reach dbt as the var
    `task_params` ({rule: {name: value}}, flows/actions.py RuleSet.dbt_vars); the
    model's own default applies when the rule file does not set it, so the model
    also builds alone (`dbt build --select int_task_candidates__<rule>`).
#}
{% macro task_param(rule, name, default) -%}
    {%- set value = (var('task_params', {}) or {}).get(rule, {}).get(name, default) -%}
    {{ return(value) }}
{%- endmacro %}
