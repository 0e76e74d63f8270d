-- Rule: no personal data reaches the marts (BI reads them): no contact-detail
-- columns, and no e-mail address in clear in the early-warning evidence (which
-- quotes survey comments).
-- depends_on: {{ ref('dim_customers') }}
select
    table_name as relation_name,
    column_name as finding
from information_schema.columns
where
    table_schema = '{{ ref("dim_customers").schema }}'
    and column_name in ('full_name', 'email', 'phone', 'phone_number', 'email_address')

union all

select
    'mart_early_warnings' as relation_name,
    warning_key as finding
from {{ ref('mart_early_warnings') }}
where evidence_text ~ '[^[:space:]@]+@[^[:space:]@]+\.[a-z]+'
