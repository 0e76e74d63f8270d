-- Rule: a customer's versions neither overlap nor leave gaps: each version ends
-- exactly when the next begins, and only the last one is open (valid_to null).
with

versions as (

    select
        customer_id,
        version_number,
        valid_from,
        valid_to,
        lead(valid_from) over (partition by customer_id order by version_number) as next_valid_from
    from {{ ref('dim_customers') }}

)

select *
from versions
where
    valid_to is distinct from next_valid_from
    or valid_to <= valid_from
