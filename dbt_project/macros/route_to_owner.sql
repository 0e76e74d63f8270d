{#
    Owner routing of task candidates, from the owner_routing seed: the most
    specific row of routing key (a touchpoint code, or the subject type such as
    `customer`) x region x segment wins ('*' = any; region outweighs segment);
    a key no row matches goes to the fallback row, flagged routed_to_fallback so
    the routing table gets fixed. `candidates` is a CTE with routing_key, region
    and segment; the result adds owner_team, owner_person, escalation_owner and
    routed_to_fallback. A touchpoint '*' row is only ever the fallback.
#}
{% macro route_to_owner(candidates) -%}
    select
        {{ candidates }}.*,
        cast(coalesce(best_route.owner_team, fallback_route.owner_team) as text) as owner_team,
        cast(coalesce(best_route.owner_person, fallback_route.owner_person) as text) as owner_person,
        cast(
            coalesce(best_route.escalation_owner, fallback_route.escalation_owner) as text
        ) as escalation_owner,
        best_route.owner_team is null as routed_to_fallback
    from {{ candidates }}
    left join lateral (
        select
            routing.owner_team,
            routing.owner_person,
            routing.escalation_owner
        from {{ ref('owner_routing') }} as routing
        where
            not routing.is_fallback
            and routing.touchpoint_code = {{ candidates }}.routing_key
            and routing.region in ('*', {{ candidates }}.region)
            and routing.segment in ('*', {{ candidates }}.segment)
        order by routing.region = '*', routing.segment = '*'
        limit 1
    ) as best_route on true
    left join lateral (
        select
            fallback.owner_team,
            fallback.owner_person,
            fallback.escalation_owner
        from {{ ref('owner_routing') }} as fallback
        where fallback.is_fallback
        order by fallback.owner_team, fallback.owner_person
        limit 1
    ) as fallback_route on true
{%- endmacro %}
