{#
    The customer marts' churn features kept between nights (int_churn_feature_states).

    int_churn_features describes each customer at their cutoff date (the churn date once
    churned, else run_date). Its costly parts, the satisfaction trend over the 180 days
    up to the cutoff and the answering habit over every invitation, read a customer's
    whole survey history; they are kept per customer, and int_churn_features joins them
    to the attributes and the tenure at the cutoff every build. A kept row stays right
    from one build (of run_date P) to the next (of run_date R) unless one of these
    happened, and then the customer's row is recomputed:

      * rows of the customer's inputs changed (the staging models' log of touched
        customers, and rows of the incremental inputs rewritten since);
      * an answer entered or left the 180 days (response_date in (P, R] or in
        (P - 180, R - 180]), an invitation got old enough to count (sent_on in
        (P - grace, R - grace]) or was answered in between (answered_at in (P, R]);
      * the cutoff moved: a churn dated in (P, R], or a subscription starting in (P, R]
        (a customer joining, or coming back).

    A churned customer's cutoff stays their churn date, so their row stays until their
    rows change. Everything else is rebuilt in full on the rules of
    macros/incremental_by_customer.sql.
#}

{#- Pre-hook: the customers to recompute, and their rows gone; a full build over an
    existing table empties it. -#}
{% macro churn_feature_states_forget() -%}
    {%- if is_incremental() -%}
        {%- if customer_can_increment() -%}
    {{ customer_touched_ddl(kept_rewritten_customers(
        [ref('int_invitations_enriched'), ref('int_responses_enriched')])) }};
    {%- set starts_crossing -%}
    select subscriptions.customer_id from {{ ref('stg_crm__subscriptions') }} as subscriptions, days
    where subscriptions.start_date > days.since_date and subscriptions.start_date <= days.run_date
    {%- endset %}
    {{ kept_moved_customers_ddl([
        kept_responses_crossing([180, 0]),
        kept_invitations_crossing(),
        kept_churn_crossing(),
        starts_crossing,
    ]) }};
    delete from {{ this }} as kept
    where kept.customer_id in (
        select moved.customer_id from {{ churn_states_temp('moved_customers') }} as moved
    )
        {%- else %}
    truncate {{ this }}
        {%- endif -%}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#- In the model's inputs: only the customers to recompute, when the build is
    incremental (the pre-hook's table is there; a unit test has no relation to keep). -#}
{% macro churn_feature_states_only_moved(column, clause='where') -%}
    {%- if this is not none and customer_can_increment() -%}
    {{ clause }} {{ column }} in (
        select moved.customer_id from {{ churn_states_temp('moved_customers') }} as moved
    )
    {%- endif -%}
{%- endmacro %}

{#- The config of int_churn_feature_states: config(**churn_feature_states_incremental()).
    The crossings are read through the indexes the observation states' pre-hooks make
    (response_date, sent_on, answered_at), made here too when this model builds first, and
    one on the subscriptions' start_date. -#}
{% macro churn_feature_states_incremental() -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'sync_all_columns',
        'indexes': [{'columns': ['customer_id'], 'unique': true}],
        'meta': {'incremental_by': 'customer_id'},
        'pre_hook': [
            "{{ ensure_indexes(['start_date'], ref('stg_crm__subscriptions')) }}",
            "{{ ensure_indexes(['response_date'], ref('int_responses_enriched')) }}",
            "{{ ensure_indexes(['sent_on', 'answered_at'], ref('int_invitations_enriched')) }}",
            "{{ churn_feature_states_forget() }}",
        ],
        'post_hook': [
            "{{ kept_record_build(['customer_id'], not churn_states_were_incremental(), "
            ~ "'ops.dbt_touched_customers', 'customer_id') }}",
        ],
    }) }}
{%- endmacro %}
