{#
    Benchmark-scaled score: the customer's minimum expectation is 0, the
    industry benchmark is 100.

        score = (value - expectation) / (benchmark - expectation) * 100

    Works for lower-is-better measures too (wait times): there benchmark <
    expectation, so the denominator is negative and a value below expectation
    scores above 0. Null when expectation = benchmark or any input is null.
#}
{% macro benchmark_scaled(value, expectation, benchmark) -%}
    (
        ({{ value }} - {{ expectation }})
        / nullif({{ benchmark }} - {{ expectation }}, 0)
        * 100.0
    )
{%- endmacro %}
