{{ config(**customer_incremental()) }}
-- Service interactions up to run_date with their touchpoint (catalogue), the
-- customer's attributes at the time of the interaction (type-2 history), the
-- value of the touchpoint's operational KPI, and the customer's previous step.
with

interactions as (

    select * from {{ ref('stg_crm__interactions') }}
    {{ customer_only_touched('customer_id') }}

),

customer_history as (

    select * from {{ ref('int_customers_historized') }}
    {{ customer_only_touched('customer_id') }}

),

catalogue as (

    select * from {{ ref('touchpoint_catalogue') }}

),

with_customer as (

    select
        interactions.*,
        customer_history.region,
        customer_history.segment,
        customer_history.plan
    from interactions
    left join customer_history
        on
            interactions.customer_id = customer_history.customer_id
            and interactions.occurred_at < coalesce(customer_history.valid_to, 'infinity')
            and (
                interactions.occurred_at >= customer_history.valid_from
                or customer_history.version_number = 1
            )

),

with_touchpoint as (

    select
        with_customer.*,
        catalogue.touchpoint_name,
        catalogue.journey_stage,
        catalogue.stage_order,
        catalogue.is_key_touchpoint,
        catalogue.kpi_name,
        case catalogue.kpi_name
            when 'avg_wait_seconds' then cast(with_customer.wait_seconds as double precision)
            when 'avg_handle_seconds' then cast(with_customer.handle_seconds as double precision)
            when 'fcr_rate'
                then cast(cast(with_customer.is_first_contact_resolution as integer) as double precision)
            when 'resolution_rate'
                then cast(cast(with_customer.is_resolved as integer) as double precision)
        end as kpi_value
    from with_customer
    left join catalogue
        on with_customer.touchpoint_code = catalogue.touchpoint_code

),

sequenced as (

    select
        *,
        lag(touchpoint_code) over customer_steps as previous_touchpoint_code,
        lag(occurred_at) over customer_steps as previous_occurred_at,
        lag(stage_order) over customer_steps as previous_stage_order,
        lag(occurred_at) over same_touchpoint as previous_same_touchpoint_at,
        row_number() over customer_steps as step_number
    from with_touchpoint
    window
        customer_steps as (partition by customer_id order by occurred_at, interaction_id),
        same_touchpoint as (
            partition by customer_id, touchpoint_code order by occurred_at, interaction_id
        )

),

final as (

    select
        interaction_id,
        customer_id,
        touchpoint_code,
        channel,
        coalesce(segment, 'unknown') as segment,
        coalesce(region, 'unknown') as region,
        plan,
        touchpoint_name,
        journey_stage,
        stage_order,
        is_key_touchpoint,
        is_resolved,
        is_first_contact_resolution,
        wait_seconds,
        handle_seconds,
        kpi_name,
        kpi_value,
        occurred_at,
        cast(occurred_at as date) as occurred_on,
        cast(step_number as integer) as step_number,
        previous_touchpoint_code,
        previous_occurred_at,
        previous_stage_order,
        coalesce(
            previous_same_touchpoint_at >= occurred_at - interval '7 days',
            false
        ) as is_repeat_contact,
        extract_date,
        loaded_at,
        cast(now() as timestamptz) as built_at
    from sequenced

)

select * from final
