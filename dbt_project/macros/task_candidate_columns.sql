{#
    The select list of the task-candidate contract (models/intermediate/actions/
    _task_candidates__models.yml), cast to its types, over a routed CTE (route_to_owner):
    every rule's final CTE is the same apart from how it ranks its candidates, so a rule
    model names only its priority score and the reason a person reads for it.
#}
{% macro task_candidate_columns(priority_score, priority_reason) -%}
    cast(as_of_date as date) as as_of_date,
    cast(subject_id as text) as subject_id,
    cast(period as text) as period,
    cast(routing_key as text) as routing_key,
    cast(region as text) as region,
    cast(segment as text) as segment,
    cast(owner_team as text) as owner_team,
    cast(owner_person as text) as owner_person,
    cast(escalation_owner as text) as escalation_owner,
    cast(routed_to_fallback as boolean) as routed_to_fallback,
    cast(marketing_consent as boolean) as marketing_consent,
    cast(value_at_risk as numeric(14, 2)) as value_at_risk,
    cast({{ priority_score }} as double precision) as priority_score,
    cast({{ priority_reason }} as text) as priority_reason,
    cast(evidence as jsonb) as evidence
{%- endmacro %}
