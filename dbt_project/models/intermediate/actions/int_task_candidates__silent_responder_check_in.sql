-- Task rule silent_responder_check_in (tasks.yml): a customer who used to answer
-- surveys and went silent (early-warning flag silent_responder). A flag that did
-- not foretell churn on the churn model's out-of-time backtest (is_predictive
-- false, marts.mart_early_warning_lift) drives no task; null = not yet measured.
-- Priority: value at risk x the flag's measured lift, so a flag that predicts
-- better ranks its customers higher when a team's capacity is short. Warnings
-- exist as of run_date only, so the rule does not look back.
with

warnings as (

    select * from {{ ref('mart_early_warnings') }}
    where flag = 'silent_responder' and coalesce(is_predictive, true)

),

customers as (

    select * from {{ ref('dim_customers') }}
    where is_current

),

customer_values as (

    select * from {{ ref('mart_customer_360') }}

),

candidates as (

    select
        {{ run_date() }} as as_of_date,
        warnings.customer_id as subject_id,
        cast(null as text) as period,
        'customer' as routing_key,
        customers.region,
        customers.segment,
        coalesce(customers.marketing_consent, false) as marketing_consent,
        customer_values.value_at_risk,
        warnings.backtest_lift,
        jsonb_build_object(
            'region', customers.region,
            'segment', customers.segment,
            'evidence', warnings.evidence,
            'evidence_text', warnings.evidence_text,
            'backtest_lift', warnings.backtest_lift,
            'value_at_risk', customer_values.value_at_risk
        ) as evidence
    from warnings
    inner join customers
        on warnings.customer_id = customers.customer_id
    left join customer_values
        on warnings.customer_id = customer_values.customer_id

),

routed as (

    {{ route_to_owner('candidates') }}

),

final as (

    select
        {{ task_candidate_columns(
            "coalesce(value_at_risk, 0) * coalesce(backtest_lift, 1)",
            "'value at risk x silent_responder backtest lift ' || coalesce(to_char(backtest_lift, 'FM990.00'), 'not yet measured')"
        ) }}
    from routed

)

select * from final
