{{ config(tags=['after_python']) }}
-- How well each early-warning flag foretold churn on the churn stage's out-of-time
-- backtest: of the customers active on the landmark date, the flagged ones' churn rate
-- in the following days (precision), the share of churners flagged (recall) and the
-- lift over the base rate; BI filters on is_predictive.
with

warning_lift as (

    select * from {{ source('python_outputs', 'churn_warning_lift') }}

),

final as (

    select
        cast(flag as text) as flag,
        cast(landmark_date as date) as landmark_date,
        cast(horizon_days as integer) as horizon_days,
        cast(n_customers as integer) as n_customers,
        cast(n_flagged as integer) as n_flagged,
        cast(base_rate as double precision) as base_rate,
        cast(flag_precision as double precision) as flag_precision,
        cast(recall as double precision) as recall,
        cast(lift as double precision) as lift,
        cast(coalesce(is_predictive, false) as boolean) as is_predictive,
        cast(measured_at as timestamptz) as measured_at
    from warning_lift

)

select * from final
