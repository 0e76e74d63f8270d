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

{#
    The most recent non-null value of `column` in a group, by `order_by`
    (latest first), e.g. the last NPS a customer gave.
#}
{% macro latest_value(column, order_by) -%}
    (array_agg({{ column }} order by {{ order_by }} desc) filter (where {{ column }} is not null))[1]
{%- endmacro %}

{#
    Free text (survey comments) with e-mail addresses and phone numbers masked,
    for marts: customers sometimes type their contact details into comments, and
    personal data must not reach BI in clear.
#}
{% macro redact_contact_details(text_expression) -%}
    regexp_replace(
        regexp_replace({{ text_expression }}, '[^[:space:]@]+@[^[:space:]@]+', '[email]', 'g'),
        '\+?[0-9][0-9 ().-]{6,}[0-9]', '[phone]', 'g'
    )
{%- endmacro %}
