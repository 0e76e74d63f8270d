{#
    What the kept churn models (int_churn_observation_states, int_churn_feature_states)
    share to find the customers whose kept rows a build must recompute: their inputs'
    rows changed, or one of their events crossed a window's edge between the last
    build's run date (days.since_date) and this one's (days.run_date).
#}

{#- A column of this model's watermark row (ops.dbt_incremental_builds), as a subquery. -#}
{% macro kept_watermark(column) -%}
    (select built.{{ column }} from ops.dbt_incremental_builds as built where built.model = '{{ this.identifier }}')
{%- endmacro %}

{#- The customers of the rows of `inputs` (incremental models with built_at) rewritten
    since this model's last build, as `union select ...` for customer_touched_ddl: a
    model kept by key rewrites an invitation when its answer moved, and the customer's
    own staging rows need not have changed. -#}
{% macro kept_rewritten_customers(inputs) -%}
    {%- for input in inputs %}
    union
    select rewritten.customer_id from {{ input }} as rewritten
    where rewritten.built_at > {{ kept_watermark('built_at') }} and rewritten.customer_id is not null
    {%- endfor %}
{%- endmacro %}

{#- The temporary table of the customers to recompute: the touched ones
    (customer_touched_ddl's table) and those of each query in `crossings`, which read
    `days` (since_date, run_date). -#}
{% macro kept_moved_customers_ddl(crossings) -%}
    create temporary table {{ churn_states_temp('moved_customers') }} on commit drop as
    with days as (
        select {{ kept_watermark('run_date') }} as since_date, {{ run_date() }} as run_date
    )
    select touched.customer_id from {{ customer_touched_relation() }} as touched
    {%- for crossing in crossings %}
    union
    {{ crossing }}
    {%- endfor %};
    analyze {{ churn_states_temp('moved_customers') }}
{%- endmacro %}

{#- Customers with an answer entering (offset 0) or leaving a window of each of
    `offsets` days. -#}
{% macro kept_responses_crossing(offsets) -%}
    select responses.customer_id from {{ ref('int_responses_enriched') }} as responses, days
    where
    {%- for offset in offsets %}
        {% if not loop.first %}or {% endif -%}
        responses.response_date > days.since_date - {{ offset }}
        and responses.response_date <= days.run_date - {{ offset }}
    {%- endfor %}
{%- endmacro %}

{#- Customers with an invitation getting old enough to count, or answered, in between. -#}
{% macro kept_invitations_crossing() -%}
    select invitations.customer_id from {{ ref('int_invitations_enriched') }} as invitations, days
    where
        invitations.sent_on > days.since_date - {{ var('survey_answer_grace_days') }}
        and invitations.sent_on <= days.run_date - {{ var('survey_answer_grace_days') }}
        or invitations.answered_at >= cast(days.since_date + 1 as timestamp)
        and invitations.answered_at < cast(days.run_date + 1 as timestamp)
{%- endmacro %}

{#- Customers who churned in between. -#}
{% macro kept_churn_crossing() -%}
    select rolled_up.customer_id from {{ ref('int_subscriptions_rolled_up') }} as rolled_up, days
    where rolled_up.churned_on > days.since_date and rolled_up.churned_on <= days.run_date
{%- endmacro %}
