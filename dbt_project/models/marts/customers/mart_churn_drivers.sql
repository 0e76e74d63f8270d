{{ config(tags=['after_python']) }}
-- Why, per customer: the inputs raising each scored customer's churn hazard most,
-- one row per customer and rank (BI charts them), with the label the model family
-- gives its coefficients (hazard ratios for Cox, time ratios for AFT models).
with

drivers as (

    select * from {{ source('python_outputs', 'churn_drivers') }}
    where run_date <= {{ run_date() }}

),

coefficients as (

    select * from {{ source('python_outputs', 'churn_hazard_ratios') }}

),

labels as (

    select distinct
        model_version,
        effect_label
    from coefficients

),

final as (

    select
        cast(drivers.customer_id as text) as customer_id,
        cast(drivers.driver_rank as integer) as driver_rank,
        cast(drivers.feature as text) as feature,
        cast(drivers.value as text) as feature_value,
        cast(drivers.contribution as double precision) as contribution,
        cast(drivers.model_version as text) as model_version,
        cast(coalesce(labels.effect_label, 'hazard_ratio') as text) as effect_label,
        cast(drivers.run_date as date) as score_run_date
    from drivers
    left join labels
        on drivers.model_version = labels.model_version

)

select * from final
