-- Type-2 history of each customer's attributes, derived from the extract
-- batches (no snapshot state): a backfill for any run_date rebuilds exactly the
-- history that date would have seen.
--   * a version starts when the CRM record changed (updated_at; extract date if missing),
--   * consecutive versions with the same tracked attributes are merged (the
--     `attributes` jsonb of extra export columns counts as one attribute),
--   * valid_to is the next version's valid_from (exclusive); null = current.
-- The first version is back-dated to the signup date so events between signup
-- and the first export find the customer's attributes.
with

versions as (

    select * from {{ ref('stg_crm__customer_versions') }}

),

fingerprinted as (

    select
        customer_id,
        region,
        segment,
        plan,
        acquisition_channel,
        marketing_consent,
        attributes,
        signup_date,
        coalesce(updated_at, cast(extract_date as timestamp)) as changed_at,
        md5(
            concat_ws(
                '|',
                coalesce(region, '~'),
                coalesce(segment, '~'),
                coalesce(plan, '~'),
                coalesce(acquisition_channel, '~'),
                coalesce(cast(marketing_consent as text), '~'),
                coalesce(cast(attributes as text), '~')
            )
        ) as attributes_hash
    from versions

),

lagged as (

    select
        *,
        lag(attributes_hash) over (
            partition by customer_id order by changed_at
        ) as previous_attributes_hash
    from fingerprinted

),

changes as (

    select * from lagged
    where previous_attributes_hash is null or attributes_hash <> previous_attributes_hash

),

numbered as (

    select
        customer_id,
        region,
        segment,
        plan,
        acquisition_channel,
        marketing_consent,
        attributes,
        signup_date,
        changed_at,
        row_number() over (
            partition by customer_id order by changed_at
        ) as version_number,
        lead(changed_at) over (
            partition by customer_id order by changed_at
        ) as next_changed_at
    from changes

),

final as (

    select
        md5(customer_id || '|' || cast(version_number as text)) as customer_version_key,
        customer_id,
        cast(version_number as integer) as version_number,
        region,
        segment,
        plan,
        acquisition_channel,
        marketing_consent,
        attributes,
        signup_date,
        case
            when version_number = 1 and signup_date is not null
                then least(cast(signup_date as timestamp), changed_at)
            else changed_at
        end as valid_from,
        next_changed_at as valid_to,
        next_changed_at is null as is_current
    from numbered

)

select * from final
