-- Rule: staging sees nothing that happened after run_date (no look-ahead), so a
-- backfill for a past date computes what that date would have seen.
-- Each table's rows of its last incremental build (macros/test_slice.sql: rows kept from
-- earlier builds were checked then, as of the same or an earlier run_date); everything on
-- a full build, --full-refresh or the weekly full check.
select
    'stg_crm__interactions' as model_name,
    interaction_id as record_id
from {{ ref('stg_crm__interactions') }}
where
    occurred_at >= {{ run_date() }} + 1
    and {{ test_slice(ref('stg_crm__interactions')) }}

union all

select
    'stg_survey__responses' as model_name,
    response_id as record_id
from {{ ref('stg_survey__responses') }}
where
    responded_at >= {{ run_date() }} + 1
    and {{ test_slice(ref('stg_survey__responses')) }}

union all

select
    'stg_survey__invitations' as model_name,
    invitation_id as record_id
from {{ ref('stg_survey__invitations') }}
where
    sent_at >= {{ run_date() }} + 1
    and {{ test_slice(ref('stg_survey__invitations')) }}

union all

select
    'stg_crm__customers' as model_name,
    customer_id as record_id
from {{ ref('stg_crm__customers') }}
where
    (updated_at >= {{ run_date() }} + 1 or extract_date > {{ run_date() }})
    and {{ test_slice(ref('stg_crm__customers')) }}
