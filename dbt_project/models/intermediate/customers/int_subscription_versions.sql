-- Each subscription as the warehouse knew it over time: one row per subscription and
-- extract date that delivered it (the latest copy of that date), valid from that extract
-- date until the next one. Staging keeps only the latest version, whose fields can
-- describe the future (a cancellation blanks the renewal date, a plan change rewrites the
-- value); the churn observations read the version known on each observation date.
with

source as (

    select * from {{ source('crm', 'subscriptions') }}
    where {{ as_of_run_date('updated_at') }}

),

-- the latest copy of each subscription within one extract date
per_extract as (

    select distinct on (subscription_id, _extract_date) *
    from source
    order by subscription_id, {{ latest_first() }}

),

renamed as (

    select
        cast(subscription_id as text) as subscription_id,
        cast(customer_id as text) as customer_id,
        cast(lower(trim(plan)) as text) as plan,
        cast(lower(trim(status)) as text) as status,
        cast(monthly_value as numeric(12, 2)) as monthly_value,
        cast(coalesce(quantity, 1) as integer) as quantity,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(renewal_date as date) as renewal_date,
        cast(_extract_date as date) as known_from
    from per_extract

),

final as (

    select
        *,
        lead(known_from) over (
            partition by subscription_id order by known_from
        ) as known_until
    from renamed

)

select * from final
