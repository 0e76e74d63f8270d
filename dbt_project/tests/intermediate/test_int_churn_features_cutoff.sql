-- Rule: a churned customer's features stop at the churn date, an active
-- customer's at run_date; the churn date is never after run_date, and tenure
-- is counted up to that cutoff.
select
    customer_id,
    churned,
    churned_on,
    cutoff_date,
    tenure_days
from {{ ref('int_churn_features') }}
where
    cutoff_date > {{ run_date() }}
    or (churned and (churned_on is null or cutoff_date <> churned_on))
    or (not churned and (churned_on is not null or cutoff_date <> {{ run_date() }}))
    or tenure_days < 0
