-- Customer dimension, type 2: one row per customer and version of their
-- attributes (valid_from inclusive, valid_to exclusive, null = current).
-- No personal data: names, e-mails and phones stay in staging.
with

customer_history as (

    select * from {{ ref('int_customers_historized') }}

),

final as (

    select
        cast(customer_version_key as text) as customer_version_key,
        cast(customer_id as text) as customer_id,
        cast(version_number as integer) as version_number,
        cast(region as text) as region,
        cast(segment as text) as segment,
        cast(plan as text) as plan,
        cast(acquisition_channel as text) as acquisition_channel,
        cast(marketing_consent as boolean) as marketing_consent,
        cast(attributes as jsonb) as attributes,
        cast(signup_date as date) as signup_date,
        cast(valid_from as timestamp) as valid_from,
        cast(valid_to as timestamp) as valid_to,
        cast(is_current as boolean) as is_current
    from customer_history

)

select * from final
