"""Parameters of the planted truth: the demo's domain, the churn model, touchpoints.

Why this exists: every number the generator plants (hazard coefficients, touchpoint
importances and rates, survey response and fault-wart probabilities) lives in one place,
so the truth files and the tests that recover it read the same constants the simulation
uses. Probability arrays are over the domain tuples below, in their order.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np

from flows.config import DEFAULT_CATEGORIES, DEFAULT_SCALES
from flows.entities import ENTITIES

# The generator writes the demo's domain, which is the default of cxloop.yml's
# ``domain:``; the orders matter (probability arrays below are over these tuples).
CHANNELS = tuple(DEFAULT_CATEGORIES["interactions.channel"])
REGIONS = tuple(DEFAULT_CATEGORIES["customers.region"])
SEGMENTS = tuple(DEFAULT_CATEGORIES["customers.segment"])
PLANS = tuple(DEFAULT_CATEGORIES["customers.plan"])
SCORE_RANGES: dict[str, dict[str, tuple[int | float, int | float]]] = {}
for _key, _bounds in DEFAULT_SCALES.items():
    _entity, _, _column = _key.partition(".")
    SCORE_RANGES.setdefault(_entity, {})[_column] = _bounds

SEEDS_DIR = Path(__file__).resolve().parent.parent.parent / "dbt_project" / "seeds"
DAY = 86_400
EPOCH = date(1970, 1, 1)
ENTITY_ORDER = tuple(ENTITIES)  # customers, subscriptions, orders, interactions, ...

# --------------------------------------------------------------------------------------
# The planted churn model. Stated here once; copied into _truth/truth.json.
# h(t|x) = (k/lam) (t/lam)^(k-1) exp(x.beta), t = days since signup.
# lam/k were calibrated so that ~30 % of the base at window start churns within a year
# (k < 1: the hazard falls with tenure, as it does for subscription businesses).
# --------------------------------------------------------------------------------------
WEIBULL_K = 0.9
WEIBULL_LAM = 1100.0
BETAS: dict[str, float] = {
    "plan_premium": -0.5,
    "segment_smb": 0.4,
    "log_monthly_value": -0.3,
    "billing_experience": -0.6,
    "unresolved_propensity": 0.5,
    "goes_silent": 0.8,
    "price_sensitive": 1.0,
}
COVARIATES = tuple(BETAS)
BASE_HISTORY_DAYS = 3 * 365  # the existing base signed up up to ~3 years before start
BASE_DRAW_CHUNK = 250_000
NEW_SIGNUPS_PER_CUSTOMER_DAY = 0.30 / 365  # keeps the base roughly stable

PLAN_P = np.array([0.5, 0.3, 0.2])  # basic, plus, premium
PLAN_PRICE = np.array([29.0, 49.0, 89.0])
SEGMENT_P = np.array([0.6, 0.3, 0.1])  # consumer, smb, enterprise
SEGMENT_MULT = np.array([1.0, 1.6, 3.0])
VALUE_SIGMA = 0.25
REGION_P = np.array([0.3, 0.25, 0.25, 0.2])
ACQ_P = np.array([0.45, 0.15, 0.2, 0.2, 0.0])  # over CHANNELS
P_GOES_SILENT = 0.10
P_PRICE_SENSITIVE = 0.12
P_CONSENT = 0.70


def _log_value_moments() -> tuple[float, float]:
    """Mean and sd of ln(monthly_value) over the signup mix: standardises the covariate.

    Analytic (plan, segment and noise are independent) so the constants are exact and can
    be stated in truth.json rather than depending on the sample drawn.
    """
    lp, ls = np.log(PLAN_PRICE), np.log(SEGMENT_MULT)
    mean = float(PLAN_P @ lp + SEGMENT_P @ ls)
    var = float(PLAN_P @ (lp - PLAN_P @ lp) ** 2 + SEGMENT_P @ (ls - SEGMENT_P @ ls) ** 2)
    return mean, math.sqrt(var + VALUE_SIGMA**2)


LOG_VALUE_MEAN, LOG_VALUE_SD = _log_value_moments()

# --------------------------------------------------------------------------------------
# Planted experience: latent mean rating (1-5) and importance of each touchpoint.
# billing: most important, least satisfying -> "fix first".
# store_visit: least important, most satisfying -> "possible overkill".
# --------------------------------------------------------------------------------------
TP_PARAMS: dict[str, dict[str, float]] = {
    # mean: latent item rating; w_os / w_ltr: weight of the item on overall satisfaction
    # (1-10) and likelihood to renew (1-5); rate: usage events per active customer-day;
    # unres: logit of an unresolved contact at average propensity; fcr: P(first contact |
    # resolved); wait/handle: lognormal medians (seconds) and sigmas.
    "apply_online": dict(mean=3.9, w_os=0.15, w_ltr=0.06, unres=-2.8, fcr=0.9,
                         wait=10, wait_s=0.8, handle=700, handle_s=0.5),
    "approval": dict(mean=3.6, w_os=0.25, w_ltr=0.10, unres=-2.8, fcr=0.9,
                     wait=60_000, wait_s=0.9, handle=600, handle_s=0.5),
    "installation": dict(mean=3.7, w_os=0.30, w_ltr=0.12, unres=-2.4, fcr=0.85,
                         wait=200_000, wait_s=0.6, handle=5_400, handle_s=0.4),
    "onboarding_call": dict(mean=4.0, w_os=0.15, w_ltr=0.06, unres=-2.6, fcr=0.85,
                            wait=60, wait_s=0.8, handle=600, handle_s=0.4),
    "app_usage": dict(mean=3.8, w_os=0.35, w_ltr=0.14, rate=3.3 / 365, unres=-2.0,
                      fcr=0.9, wait=2, wait_s=0.6, handle=240, handle_s=0.8),
    "billing": dict(mean=2.9, w_os=1.00, w_ltr=0.45, unres=-1.4, fcr=0.75,
                    wait=30, wait_s=1.0, handle=300, handle_s=0.6),
    "support_call": dict(mean=3.5, w_os=0.50, w_ltr=0.20, rate=1.5 / 365, unres=-1.6,
                         fcr=0.7, wait=240, wait_s=0.9, handle=480, handle_s=0.6),
    "store_visit": dict(mean=4.4, w_os=0.05, w_ltr=0.02, rate=0.6 / 365, unres=-2.6,
                        fcr=0.9, wait=300, wait_s=0.7, handle=900, handle_s=0.5),
    "field_repair": dict(mean=3.6, w_os=0.30, w_ltr=0.12, rate=0.35 / 365, unres=-1.8,
                         fcr=0.8, wait=150_000, wait_s=0.7, handle=3_600, handle_s=0.5),
    "renewal": dict(mean=3.5, w_os=0.55, w_ltr=0.40, unres=-2.2, fcr=0.85,
                    wait=90, wait_s=0.8, handle=420, handle_s=0.5),
}
TP_CHANNEL_P: dict[str, tuple[float, ...]] = {  # over CHANNELS: web, app, phone, store, field
    "apply_online": (0.7, 0.3, 0, 0, 0),
    "approval": (1, 0, 0, 0, 0),
    "installation": (0, 0, 0, 0, 1),
    "onboarding_call": (0, 0, 1, 0, 0),
    "app_usage": (0.15, 0.85, 0, 0, 0),
    "billing": (0.5, 0.3, 0.2, 0, 0),
    "support_call": (0, 0, 1, 0, 0),
    "store_visit": (0, 0, 0, 1, 0),
    "field_repair": (0, 0, 0, 0, 1),
    "renewal": (0.25, 0, 0.6, 0.15, 0),
}
BILLING_CONTACT_P = 0.22  # share of monthly bills that lead to a billing contact
RENEWAL_CONTACTS_PER_ANNIVERSARY = 0.6  # spread over the 30 days before it
SEGMENT_RATING_OFFSET = np.array([0.0, -0.5, 0.1])  # smb: worse at every touchpoint
PRICE_SENSITIVE_RATING_BUMP = 0.4  # mercenaries are satisfied...
PRICE_SENSITIVE_LTR_DROP = 1.0  # ...but do not say they will stay
BILLING_EXPERIENCE_LOADING = 0.8  # billing ratings = mean + 0.8 * billing_experience + ...
UNRESOLVED_LOADING = 0.9  # logit(unresolved) = base + 0.9 * unresolved_propensity
UNRESOLVED_RATING_DROP = 0.9  # a transactional rating after an unresolved contact
GENERAL_SD = 0.3  # customer-level general mood, shared by all items
RATING_NOISE_SD = 0.7
OS_BASE, OS_NOISE = 6.8, 0.8
LTR_BASE, LTR_NOISE = 3.4, 0.5

P_INVITE_AFTER_INTERACTION = 0.40
RELATIONSHIP_EVERY_DAYS = 90
RESPONSE_P_MEAN = 0.38
RESPONSE_P_SEGMENT = np.array([1.0, 0.75, 0.85])
SILENT_RESPONSE_P = 0.85  # goes_silent customers answer regularly ... until onset
P_COMMENT = 0.30
ORDER_RATE = 0.0015  # add-on orders per active customer-day
P_DEVICE_AT_SIGNUP = 0.5
UPDATE_RATE = 0.3 / 365  # attribute changes per active customer-day
P_LATE = 0.02
P_REEXPORT = 0.01
CANCEL_REASONS = ("price", "competitor", "service", "billing", "moved", "other")
