-- Rule: every customer has exactly one current version in the type-2 dimension.
select
    customer_id,
    count(*) filter (where is_current) as n_current
from {{ ref('dim_customers') }}
group by customer_id
having count(*) filter (where is_current) <> 1
