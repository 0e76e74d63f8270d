"""Demo data generator: CRM and survey extracts whose behaviour has a known cause.

Why this exists: every later stage of cxloop (validation, marts, driver analysis, the
survival model, improvement tasks) needs data on which "right" is known. The generator
plants that truth - a stated proportional-hazards churn model, touchpoint importances,
a worse segment, mercenaries, customers who go silent - writes it beside the extracts in
``_truth/``, and makes the extracts look like a real nightly export (one folder per entity
and day, late and repeated records, attribute updates). On request it also breaks rows
and files on purpose and lists every break in ``_faults/manifest.csv`` so validation can be
scored exactly.

Design choices, and why:

* Everything about a customer that does not depend on the day (covariates, signup and
  churn time, names, survey propensity) is drawn up front into per-customer arrays; the
  daily loop only draws the day's events. Memory is those arrays plus a few days of
  pending rows (late arrivals, invitations sent tomorrow, answers within 5 days).
* Each purpose and day gets its own ``numpy`` Generator seeded from ``(seed, purpose,
  day)``, so output is byte-identical for a seed and one change does not shift the rest.
* Rows are formatted and written with Arrow compute kernels (C++), not per-row Python:
  1M customers x 365 days is ~10M interactions and must run in about a minute.

Layout of the package (one concern per module): :mod:`.params` (the planted truth's
constants), :mod:`.vocab` (names and comments), :mod:`.streams` (seeded random streams),
:mod:`.catalogue` (touchpoints and items from the seeds), :mod:`.population` (customers and
their latent traits), :mod:`.subscriptions` (CRM changes and orders), :mod:`.interactions`,
:mod:`.surveys` (invitations, responses, item ratings), :mod:`.tables` and :mod:`.columns`
(formatting to the contract), :mod:`.export` (CSV/Parquet files), :mod:`.faults`,
:mod:`.truth` (``_truth/`` files), :mod:`.generator` (the daily loop) and :mod:`.entry`
(:func:`generate`). This module re-exports every name callers used from the former single
module ``flows/demo.py`` (including private helpers the profiles and the churn snapshot
reuse), so ``from flows.demo import X`` keeps working.
"""

from __future__ import annotations

from flows.demo.batches import (
    Batch,
    _concat,
    _dedupe,
    _take_rows,
)
from flows.demo.catalogue import (
    _Catalogue,
    load_catalogue,
)
from flows.demo.columns import (
    _ascii,
    _bool,
    _date,
    _ids,
    _int,
    _money,
    _take,
    _take_date,
    _ts,
)
from flows.demo.entry import (
    generate,
)
from flows.demo.export import (
    CSV_CHUNK_ROWS,
    NEEDS_QUOTE,
    _csv_bytes,
    _csv_header,
    _csv_quote,
    _csv_rows,
    _write_table,
)
from flows.demo.faults import (
    _COL_TYPES,
    BAD_EMAILS,
    FILE_FAULT_KINDS,
    MANIFEST_FIELDS,
    OUT_OF_RANGE_VALUE,
    ROW_FAULT_KINDS,
    UNKNOWN_CHANNELS,
    UNKNOWN_TOUCHPOINTS,
    _Faults,
    _LazyColumns,
    _renamed,
)
from flows.demo.generator import (
    _Generator,
)
from flows.demo.interactions import (
    _InteractionsMixin,
)
from flows.demo.params import (
    ACQ_P,
    BASE_DRAW_CHUNK,
    BASE_HISTORY_DAYS,
    BETAS,
    BILLING_CONTACT_P,
    BILLING_EXPERIENCE_LOADING,
    CANCEL_REASONS,
    CHANNELS,
    COVARIATES,
    DAY,
    ENTITY_ORDER,
    EPOCH,
    GENERAL_SD,
    LOG_VALUE_MEAN,
    LOG_VALUE_SD,
    LTR_BASE,
    LTR_NOISE,
    NEW_SIGNUPS_PER_CUSTOMER_DAY,
    ORDER_RATE,
    OS_BASE,
    OS_NOISE,
    P_COMMENT,
    P_CONSENT,
    P_DEVICE_AT_SIGNUP,
    P_GOES_SILENT,
    P_INVITE_AFTER_INTERACTION,
    P_LATE,
    P_PRICE_SENSITIVE,
    P_REEXPORT,
    PLAN_P,
    PLAN_PRICE,
    PLANS,
    PRICE_SENSITIVE_LTR_DROP,
    PRICE_SENSITIVE_RATING_BUMP,
    RATING_NOISE_SD,
    REGION_P,
    REGIONS,
    RELATIONSHIP_EVERY_DAYS,
    RENEWAL_CONTACTS_PER_ANNIVERSARY,
    RESPONSE_P_MEAN,
    RESPONSE_P_SEGMENT,
    SCORE_RANGES,
    SEEDS_DIR,
    SEGMENT_MULT,
    SEGMENT_P,
    SEGMENT_RATING_OFFSET,
    SEGMENTS,
    SILENT_RESPONSE_P,
    TP_CHANNEL_P,
    TP_PARAMS,
    UNRESOLVED_LOADING,
    UNRESOLVED_RATING_DROP,
    UPDATE_RATE,
    VALUE_SIGMA,
    WEIBULL_K,
    WEIBULL_LAM,
    _log_value_moments,
)
from flows.demo.population import (
    _draw_traits,
    _Population,
)
from flows.demo.streams import (
    PURPOSES,
    _rng,
)
from flows.demo.subscriptions import (
    _CrmMixin,
)
from flows.demo.summary import (
    GenerationSummary,
)
from flows.demo.surveys import (
    _SurveysMixin,
)
from flows.demo.tables import (
    _TablesMixin,
)
from flows.demo.truth import (
    COVARIATE_DOC,
    _write_truth,
)
from flows.demo.vocab import (
    CN_GIVEN,
    CN_SURNAME,
    COMMENTS,
    EMAIL_DOMAINS,
    EMAIL_SEPS,
    EN_FIRST,
    EN_LAST,
    P_CHINESE_NAME,
    TP_NAME_ZH,
)

__all__ = [
    "ACQ_P",
    "BAD_EMAILS",
    "BASE_DRAW_CHUNK",
    "BASE_HISTORY_DAYS",
    "BETAS",
    "BILLING_CONTACT_P",
    "BILLING_EXPERIENCE_LOADING",
    "Batch",
    "CANCEL_REASONS",
    "CHANNELS",
    "CN_GIVEN",
    "CN_SURNAME",
    "COMMENTS",
    "COVARIATES",
    "COVARIATE_DOC",
    "CSV_CHUNK_ROWS",
    "DAY",
    "EMAIL_DOMAINS",
    "EMAIL_SEPS",
    "ENTITY_ORDER",
    "EN_FIRST",
    "EN_LAST",
    "EPOCH",
    "FILE_FAULT_KINDS",
    "GENERAL_SD",
    "GenerationSummary",
    "LOG_VALUE_MEAN",
    "LOG_VALUE_SD",
    "LTR_BASE",
    "LTR_NOISE",
    "MANIFEST_FIELDS",
    "NEEDS_QUOTE",
    "NEW_SIGNUPS_PER_CUSTOMER_DAY",
    "ORDER_RATE",
    "OS_BASE",
    "OS_NOISE",
    "OUT_OF_RANGE_VALUE",
    "PLANS",
    "PLAN_P",
    "PLAN_PRICE",
    "PRICE_SENSITIVE_LTR_DROP",
    "PRICE_SENSITIVE_RATING_BUMP",
    "PURPOSES",
    "P_CHINESE_NAME",
    "P_COMMENT",
    "P_CONSENT",
    "P_DEVICE_AT_SIGNUP",
    "P_GOES_SILENT",
    "P_INVITE_AFTER_INTERACTION",
    "P_LATE",
    "P_PRICE_SENSITIVE",
    "P_REEXPORT",
    "RATING_NOISE_SD",
    "REGIONS",
    "REGION_P",
    "RELATIONSHIP_EVERY_DAYS",
    "RENEWAL_CONTACTS_PER_ANNIVERSARY",
    "RESPONSE_P_MEAN",
    "RESPONSE_P_SEGMENT",
    "ROW_FAULT_KINDS",
    "SCORE_RANGES",
    "SEEDS_DIR",
    "SEGMENTS",
    "SEGMENT_MULT",
    "SEGMENT_P",
    "SEGMENT_RATING_OFFSET",
    "SILENT_RESPONSE_P",
    "TP_CHANNEL_P",
    "TP_NAME_ZH",
    "TP_PARAMS",
    "UNKNOWN_CHANNELS",
    "UNKNOWN_TOUCHPOINTS",
    "UNRESOLVED_LOADING",
    "UNRESOLVED_RATING_DROP",
    "UPDATE_RATE",
    "VALUE_SIGMA",
    "WEIBULL_K",
    "WEIBULL_LAM",
    "_COL_TYPES",
    "_Catalogue",
    "_CrmMixin",
    "_Faults",
    "_Generator",
    "_InteractionsMixin",
    "_LazyColumns",
    "_Population",
    "_SurveysMixin",
    "_TablesMixin",
    "_ascii",
    "_bool",
    "_concat",
    "_csv_bytes",
    "_csv_header",
    "_csv_quote",
    "_csv_rows",
    "_date",
    "_dedupe",
    "_draw_traits",
    "_ids",
    "_int",
    "_log_value_moments",
    "_money",
    "_renamed",
    "_rng",
    "_take",
    "_take_date",
    "_take_rows",
    "_ts",
    "_write_table",
    "_write_truth",
    "generate",
    "load_catalogue",
]
