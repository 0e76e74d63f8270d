{#
    Net Promoter Score from a 0-10 score column: % promoters (9-10) minus
    % detractors (0-6), in -100..100; null when nobody answered.
#}
{% macro nps(score_column) -%}
    (
        100.0 * (
            count(*) filter (where {{ score_column }} >= 9)
            - count(*) filter (where {{ score_column }} <= 6)
        ) / nullif(count({{ score_column }}), 0)
    )
{%- endmacro %}

{#
    Apostle model (Jones & Sasser): a customer placed by satisfaction
    (overall_satisfaction, 1-10) and loyalty (likelihood_to_renew, 1-5, and
    not churned). Cut points come from vars and are repeated in the marts.
      apostle    very high satisfaction and top loyalty
      loyalist   satisfied and loyal
      mercenary  satisfied but not loyal (or gone anyway)
      hostage    unsatisfied but staying
      defector   unsatisfied and not loyal (or gone)
#}
{% macro apostle_group(satisfaction, loyalty, churned) -%}
    case
        when {{ satisfaction }} is null or {{ loyalty }} is null then null
        when {{ satisfaction }} >= {{ var('apostle_satisfaction_cut') }}
            and {{ loyalty }} >= {{ var('apostle_loyalty_cut') }}
            and not coalesce({{ churned }}, false)
            then
                case
                    when {{ satisfaction }} >= {{ var('apostle_top_satisfaction_cut') }}
                        and {{ loyalty }} >= {{ var('apostle_top_loyalty_cut') }}
                        then 'apostle'
                    else 'loyalist'
                end
        when {{ satisfaction }} >= {{ var('apostle_satisfaction_cut') }} then 'mercenary'
        when {{ loyalty }} >= {{ var('apostle_loyalty_cut') }}
            and not coalesce({{ churned }}, false)
            then 'hostage'
        else 'defector'
    end
{%- endmacro %}
