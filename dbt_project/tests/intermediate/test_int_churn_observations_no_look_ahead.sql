-- Rule: no feature of an observation uses data dated after its observation date
-- (features_as_of is the latest event date any feature used), every observed customer
-- was still a customer on that date (a churn lies strictly after it), observation dates
-- lie inside the loaded data and up to run_date, and windows never reach before the
-- first extract (observed_window_days <= days since the first extract); the subscription
-- fields come from a version extracted by the observation date (subscription_known_on).
select
    observation_id,
    observation_date,
    features_as_of,
    churned_on,
    data_start_date,
    observed_window_days,
    subscription_known_on
from {{ ref('int_churn_observations') }}
where
    features_as_of > observation_date
    or churned_on <= observation_date
    or observation_date > {{ run_date() }}
    or observation_date <= data_start_date
    or observed_window_days > observation_date - data_start_date + 1
    or observed_window_days > {{ var('churn_feature_window_days') }}
    or tenure_days < 0
    or subscription_known_on > observation_date
