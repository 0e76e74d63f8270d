"""The section models of ``cxloop.yml`` other than sources, paths and the environment
(those are in ``flows/config.py``), one module per topic:

- ``base``: ``_Strict``, the ``extra="forbid"`` base every section model derives from;
- ``domain``: ``domain:`` (categories, scales, plausibility, ordered dates, dimensions,
  segmentation) and the demo's domain as its defaults;
- ``analysis``: ``goals``, ``quadrant``, ``subscriptions`` and ``churn``;
- ``alerts``: ``alerts:`` and its SMTP relay.

The package re-exports every name the single module ``flows/config_sections.py`` had, so
``from flows.config_sections import X`` keeps working; ``flows.config`` re-exports them again
as the public API.
"""

from __future__ import annotations

from flows.config_sections.alerts import AlertSettings, SmtpSettings, _hh_mm
from flows.config_sections.analysis import (
    ChurnSettings,
    Goal,
    QuadrantSettings,
    SubscriptionSettings,
    _default_goals,
    _goal_columns,
)
from flows.config_sections.base import _Strict
from flows.config_sections.domain import (
    _DEMO_CHANNELS,
    _DEMO_PLANS,
    _NUMERIC,
    DEFAULT_CATEGORIES,
    DEFAULT_EXPERIENCE_DIMENSIONS,
    DEFAULT_ORDERED,
    DEFAULT_PLAUSIBLE,
    DEFAULT_SCALES,
    NOT_CATEGORIES,
    REFERENCE_COLUMNS,
    Domain,
    _bound,
    _contract_column,
    _text_value,
)

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_EXPERIENCE_DIMENSIONS",
    "DEFAULT_ORDERED",
    "DEFAULT_PLAUSIBLE",
    "DEFAULT_SCALES",
    "NOT_CATEGORIES",
    "REFERENCE_COLUMNS",
    "_DEMO_CHANNELS",
    "_DEMO_PLANS",
    "_NUMERIC",
    "AlertSettings",
    "ChurnSettings",
    "Domain",
    "Goal",
    "QuadrantSettings",
    "SmtpSettings",
    "SubscriptionSettings",
    "_Strict",
    "_bound",
    "_contract_column",
    "_default_goals",
    "_goal_columns",
    "_hh_mm",
    "_text_value",
]
