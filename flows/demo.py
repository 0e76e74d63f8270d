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
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.config import DEFAULT_CATEGORIES, DEFAULT_SCALES
from flows.entities import ENTITIES, SURVEY_TYPES

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

SEEDS_DIR = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds"
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

# Names: built from parts (no faker). Chinese names carry pinyin for their e-mail.
EN_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Sandra Mark Ashley Paul Emily Steven Kimberly Andrew Donna Joshua Michelle "
    "Kevin Laura Brian Amanda Aisha Omar Sofia Lars Ana Mateo Priya Ravi Yuki Kenji"
).split()
EN_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris "
    "Clark Lewis Robinson Walker Young Allen King Wright Scott Green Baker Adams Nelson "
    "Hill Campbell Mitchell Carter O'Brien O'Neil Haddad Silva Berg Novak Kowalski Patel "
    "Singh Nakamura Müller"
).split()
CN_SURNAME = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("赵", "zhao"), ("黄", "huang"), ("周", "zhou"), ("吴", "wu"),
    ("徐", "xu"), ("孙", "sun"), ("胡", "hu"), ("朱", "zhu"), ("高", "gao"),
    ("林", "lin"), ("何", "he"), ("郭", "guo"), ("马", "ma"), ("罗", "luo"),
]
CN_GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
    ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
    ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"),
    ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂英", "guiying"), ("建华", "jianhua"), ("志强", "zhiqiang"),
    ("晓燕", "xiaoyan"), ("海燕", "haiyan"), ("子涵", "zihan"), ("雨桐", "yutong"),
]
P_CHINESE_NAME = 0.15
# RFC 2606 reserved domains: addresses look real but can never reach a real person.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com",
                 "inbox.example.net", "post.example.org")
EMAIL_SEPS = (".", "_", "")

TP_NAME_ZH = {
    "apply_online": "网上申请", "approval": "审批", "installation": "上门安装",
    "onboarding_call": "欢迎电话", "app_usage": "手机应用", "billing": "账单",
    "support_call": "客服电话", "store_visit": "门店服务", "field_repair": "上门维修",
    "renewal": "续约",
}
COMMENTS = {
    ("en", "pos"): [
        "Great service, thank you!",
        "Quick and easy, exactly what I needed.",
        "The {tp} was smooth - no complaints.",
        "Staff were friendly, helpful and fast.",
        'Really happy with the "new" experience, well done.',
    ],
    ("en", "mid"): [
        "It was okay, nothing special.",
        "Fine I guess, but it took a while.",
        "Average experience with the {tp}; could be better.",
        "Not bad, not great.",
        "Got there in the end, after two tries.",
    ],
    ("en", "neg"): [
        "Terrible, I waited for ages and nobody called back.",
        'My bill was wrong again, and support said "it\'s the system".',
        "The {tp} was a mess, I'm thinking of leaving.",
        "Too expensive for what you get.",
        "Nobody could fix it, very disappointed.",
    ],
    ("zh", "pos"): ["服务很好，谢谢！", "办理很顺利，非常满意。", "{tp}体验很好，工作人员很专业。"],
    ("zh", "mid"): ["还行吧，一般般。", "还可以，就是等的时间有点长。", "{tp}马马虎虎，有待改进。"],
    ("zh", "neg"): [
        "太差了，等了很久也没人回电话。",
        "账单又错了，客服说“系统问题”，很失望。",
        "{tp}一团糟, 我在考虑换一家。",
        "价格太贵了，不值。",
    ],
}

PURPOSES = {
    name: i
    for i, name in enumerate(
        ["base", "signup", "churn", "names", "survey_traits", "usage", "onboard", "attrs",
         "survey", "ratings", "comments", "orders", "updates", "warts", "faults", "plan"]
    )
}


def _rng(seed: int, purpose: str, day: int = -1) -> np.random.Generator:
    """A Generator for one purpose (and day): independent streams, stable under change."""
    return np.random.default_rng(np.random.SeedSequence([seed, PURPOSES[purpose], day + 1]))


# --------------------------------------------------------------------------------------
# Public result
# --------------------------------------------------------------------------------------
@dataclass
class GenerationSummary:
    """What ``generate`` wrote, so the CLI can print it and tests can find the files."""

    out: Path
    start: date
    end: date  # last extract date (inclusive)
    days: int
    fmt: str
    customers_base: int  # active at window start
    customers_total: int  # base + new signups in the window
    files: list[str] = field(default_factory=list)  # relative to ``out``, posix
    rows: dict[str, int] = field(default_factory=dict)  # data rows per entity (before faults)
    n_faults: int = 0  # manifest entries (row faults + file faults)
    truth_path: Path | None = None
    truth_customers_path: Path | None = None
    manifest_path: Path | None = None

    @property
    def files_written(self) -> int:
        return len(self.files)


# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Catalogue:
    """Touchpoints and survey items read from the dbt seeds (the single source of codes)."""

    codes: tuple[str, ...]  # in stage order
    items: tuple[str, ...]  # item_code per touchpoint
    dimensions: tuple[str, ...]  # item dimension per touchpoint
    names: tuple[str, ...]

    def index(self, code: str) -> int:
        return self.codes.index(code)


def load_catalogue(seeds_dir: Path = SEEDS_DIR) -> _Catalogue:
    """Read the touchpoint catalogue and survey items; fail loudly if they disagree."""
    with open(seeds_dir / "touchpoint_catalogue.csv", newline="", encoding="utf-8") as f:
        tps = sorted(csv.DictReader(f), key=lambda r: int(r["stage_order"]))
    with open(seeds_dir / "survey_items.csv", newline="", encoding="utf-8") as f:
        items = {r["touchpoint_code"]: r for r in csv.DictReader(f)}
    codes = tuple(r["touchpoint_code"] for r in tps)
    missing = [c for c in codes if c not in items or c not in TP_PARAMS]
    if missing:
        raise ValueError(f"touchpoints without a survey item or demo parameters: {missing}")
    return _Catalogue(
        codes=codes,
        items=tuple(items[c]["item_code"] for c in codes),
        dimensions=tuple(items[c]["experience_dimension"] for c in codes),
        names=tuple(r["touchpoint_name"] for r in tps),
    )


# --------------------------------------------------------------------------------------
# Population: every customer of the run, drawn up front
# --------------------------------------------------------------------------------------
def _draw_traits(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Covariates and the CRM attributes they are expressed through, for ``n`` signups."""
    plan = rng.choice(3, n, p=PLAN_P).astype(np.int8)
    segment = rng.choice(3, n, p=SEGMENT_P).astype(np.int8)
    value = PLAN_PRICE[plan] * SEGMENT_MULT[segment] * np.exp(rng.normal(0, VALUE_SIGMA, n))
    cents = np.round(value * 100).astype(np.int64)
    x = {
        "plan_premium": (plan == 2).astype(np.float64),
        "segment_smb": (segment == 1).astype(np.float64),
        "log_monthly_value": (np.log(cents / 100.0) - LOG_VALUE_MEAN) / LOG_VALUE_SD,
        "billing_experience": rng.normal(0, 1, n),
        "unresolved_propensity": rng.normal(0, 1, n),
        "goes_silent": (rng.random(n) < P_GOES_SILENT).astype(np.float64),
        "price_sensitive": (rng.random(n) < P_PRICE_SENSITIVE).astype(np.float64),
    }
    lp = sum(BETAS[k] * x[k] for k in COVARIATES)
    # Inverse-transform draw from the Weibull PH model: S(t) = exp(-(t/lam)^k e^lp).
    t_churn = WEIBULL_LAM * (rng.exponential(1.0, n) / np.exp(lp)) ** (1.0 / WEIBULL_K)
    return {"plan": plan, "segment": segment, "value_cents": cents, "lp": lp,
            "t_churn": t_churn, **x}


class _Population:
    """Per-customer state arrays (index i <-> customer_id C{i+1:08d})."""

    def __init__(self, seed: int, n_base: int, days: int) -> None:
        rng = _rng(seed, "base")
        # Existing base: signups over the last 3 years that survived to window start.
        # Rejection keeps the left truncation honest: entry_days = tenure at start.
        parts: list[dict[str, np.ndarray]] = []
        have = 0
        while have < n_base:  # chunks keep the peak memory near the final arrays
            m = min(BASE_DRAW_CHUNK, max(1000, int((n_base - have) * 1.8)))
            tr = _draw_traits(rng, m)
            tr["signup_abs"] = -rng.uniform(1.0, BASE_HISTORY_DAYS, m)
            keep = tr["t_churn"] > -tr["signup_abs"]
            tr = {k: v[keep][: n_base - have] for k, v in tr.items()}
            parts.append(tr)
            have += len(tr["plan"])
        base = {k: np.concatenate([p.pop(k) for p in parts]) for k in list(parts[0])}
        del parts
        order = np.argsort(base["signup_abs"], kind="stable")
        for k in list(base):
            base[k] = base[k][order]

        rng = _rng(seed, "signup")
        per_day = rng.poisson(n_base * NEW_SIGNUPS_PER_CUSTOMER_DAY, days)
        n_new = int(per_day.sum())
        new = _draw_traits(rng, n_new)
        day_of = np.repeat(np.arange(days), per_day)
        new["signup_abs"] = day_of + np.sort(rng.uniform(0.3, 0.9, n_new))  # sorted per day
        new["signup_abs"] = np.sort(new["signup_abs"], kind="stable")

        a = {k: np.concatenate([base.pop(k), new.pop(k)]) for k in list(base)}
        self.n_base, self.n = n_base, n_base + n_new
        self.signups_per_day = per_day
        for k, v in a.items():
            setattr(self, k, v)
        self.signup_abs: np.ndarray = a["signup_abs"]
        self.t_churn: np.ndarray = a["t_churn"]
        self.churn_abs: np.ndarray = self.signup_abs + self.t_churn
        self.plan0: np.ndarray = a["plan"].copy()
        self.plan: np.ndarray = a["plan"]  # current plan (changes basic <-> plus)
        self.segment: np.ndarray = a["segment"]
        self.value0_cents: np.ndarray = a["value_cents"].copy()
        self.value_cents: np.ndarray = a["value_cents"]
        n = self.n

        rng = _rng(seed, "attrs")
        self.region = rng.choice(4, n, p=REGION_P).astype(np.int8)
        self.acq = rng.choice(len(CHANNELS), n, p=ACQ_P).astype(np.int8)
        self.consent = rng.random(n) < P_CONSENT
        self.bill_phase = rng.integers(0, 30, n).astype(np.int16)
        self.rel_phase = rng.integers(0, RELATIONSHIP_EVERY_DAYS, n).astype(np.int16)
        self.general = rng.normal(0, GENERAL_SD, n)
        # Base tenure at start: the early touchpoints and billing were experienced already.
        self.experienced = np.zeros((n, len(TP_PARAMS)), dtype=bool)
        tenure0 = -self.signup_abs
        old = tenure0 > 30
        self.experienced[:, :4] = old[:, None]
        self.experienced[:, 5] = old  # billing
        for j, p in ((4, 0.8), (6, 0.5), (7, 0.3), (8, 0.2)):
            self.experienced[:, j] = old & (rng.random(n) < p)
        self.experienced[:, 9] = (tenure0 > 365) & (rng.random(n) < 0.6)
        # Existing customers' last CRM update before the window.
        self.base_updated = self.signup_abs + rng.random(n) * np.maximum(-self.signup_abs, 0)

        rng = _rng(seed, "names")
        self.is_cn = rng.random(n) < P_CHINESE_NAME
        self.name_a = np.where(self.is_cn, rng.integers(0, len(CN_SURNAME), n),
                               rng.integers(0, len(EN_FIRST), n)).astype(np.int16)
        self.name_b = np.where(self.is_cn, rng.integers(0, len(CN_GIVEN), n),
                               rng.integers(0, len(EN_LAST), n)).astype(np.int16)
        self.email_num = rng.integers(0, 1000, n).astype(np.int16)
        self.email_has_num = rng.random(n) < 0.6
        self.email_dom = rng.integers(0, len(EMAIL_DOMAINS), n).astype(np.int8)
        self.email_sep = rng.integers(0, len(EMAIL_SEPS), n).astype(np.int8)
        self.email_ver = np.zeros(n, dtype=np.int16)
        self.phone_area = rng.integers(201, 990, n).astype(np.int16)
        self.phone_line = rng.integers(0, 10000, n).astype(np.int16)

        rng = _rng(seed, "survey_traits")
        base_p = rng.beta(3.0, 3.0 * (1 - RESPONSE_P_MEAN) / RESPONSE_P_MEAN, n)
        self.resp_p = base_p * RESPONSE_P_SEGMENT[self.segment]
        silent = self.goes_silent.astype(bool)
        self.resp_p[silent] = SILENT_RESPONSE_P
        # goes_silent: stop answering 1-4 months before churning (or mid-window if they
        # outlive it), never before they had time to become regular responders.
        onset = np.minimum(self.churn_abs - rng.uniform(30, 120, n),
                           rng.uniform(0.15, 0.7, n) * days)
        onset = np.maximum(onset, self.signup_abs + 45)
        self.silent_onset = np.where(silent, onset, np.inf)
        self.comment_zh = np.where(self.is_cn, rng.random(n) < 0.9, rng.random(n) < 0.05)

        rng = _rng(seed, "churn")
        self.cancel_reason = self._cancel_reasons(rng)

    # attributes set dynamically in __init__ for the covariates
    plan_premium: np.ndarray
    segment_smb: np.ndarray
    log_monthly_value: np.ndarray
    billing_experience: np.ndarray
    unresolved_propensity: np.ndarray
    goes_silent: np.ndarray
    price_sensitive: np.ndarray
    lp: np.ndarray

    def _cancel_reasons(self, rng: np.random.Generator) -> np.ndarray:
        """Reason follows the cause: mercenaries leave on price; bad billing -> billing."""
        u = rng.random(self.n)
        out = np.empty(self.n, dtype=np.int8)
        for lo in range(0, self.n, BASE_DRAW_CHUNK):  # chunks: (n, 6) floats add up
            sl = slice(lo, lo + BASE_DRAW_CHUNK)
            m = len(u[sl])
            w = np.empty((m, len(CANCEL_REASONS)))
            w[:, 0] = 0.15  # price
            w[:, 1] = 0.15  # competitor
            w[:, 2] = 0.15 * (1 + np.maximum(self.unresolved_propensity[sl], 0) * 1.5)  # service
            w[:, 3] = 0.10 * (1 + np.maximum(-self.billing_experience[sl], 0) * 1.5)  # billing
            w[:, 4] = 0.15  # moved
            w[:, 5] = 0.08  # other
            w[self.price_sensitive[sl].astype(bool)] = (0.55, 0.35, 0.02, 0.02, 0.03, 0.03)
            cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
            out[sl] = (u[sl][:, None] > cum).sum(1).clip(0, len(CANCEL_REASONS) - 1)
        return out


# --------------------------------------------------------------------------------------
# Formatting to the extract contract (Arrow string columns; null = empty)
# --------------------------------------------------------------------------------------
def _ids(prefix: str, nums: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pa.array(np.asarray(nums, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def _ts(epoch_secs: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS``: Arrow's timestamp->string cast has exactly that form."""
    return pa.array(np.asarray(epoch_secs, dtype=np.int64), type=pa.timestamp("s")).cast(
        pa.string()
    )


def _date(epoch_days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(epoch_days, dtype=np.int32), type=pa.date32()).cast(pa.string())


def _int(values: np.ndarray, null_below: int | None = None) -> pa.Array:
    v = np.asarray(values, dtype=np.int64)
    mask = None if null_below is None else v < null_below
    return pa.array(v, mask=mask).cast(pa.string())


def _bool(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=bool)).cast(pa.string())


def _money(cents: np.ndarray) -> pa.Array:
    c = np.asarray(cents, dtype=np.int64)
    whole = pa.array(c // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(c % 100).cast(pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _take(labels: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    """Codes by index; negative index = null."""
    i = np.asarray(idx, dtype=np.int64)
    return pa.array(list(labels), type=pa.string()).take(pa.array(i, mask=i < 0))


# --------------------------------------------------------------------------------------
# Writing: CSV with minimal quoting built by Arrow kernels, or Parquet of strings
# --------------------------------------------------------------------------------------
NEEDS_QUOTE = r'[",\r\n]'


def _csv_quote(col: pa.Array) -> pa.Array:
    """RFC 4180 minimal quoting: only values holding a quote, comma or newline."""
    needs = pc.fill_null(pc.match_substring_regex(col, NEEDS_QUOTE), False)
    if not pc.any(needs).as_py():
        return col
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, col)


CSV_CHUNK_ROWS = 200_000  # bounds the memory of a big file (day 1 holds the whole base)


def _csv_header(names: list[str]) -> bytes:
    return (",".join(_csv_quote(pa.array(names, type=pa.string())).to_pylist()) + "\n").encode()


def _csv_rows(table: pa.Table) -> bytes:
    """Data lines of ``table``, each ``\\n``-terminated, joined by Arrow kernels (no Python
    loop per row): the values buffer of the joined string array is the file body."""
    if table.num_rows == 0:
        return b""
    cols = [_csv_quote(table.column(i).combine_chunks()) for i in range(table.num_columns)]
    lines = pc.binary_join_element_wise(*cols, ",", null_handling="replace",
                                        null_replacement="")
    lines = pc.binary_join_element_wise(lines, "", "\n")
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)
    lo, hi = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[lo:hi].tobytes()


def _csv_bytes(table: pa.Table) -> bytes:
    """The whole file as bytes: header line, then one line per row."""
    return _csv_header(table.column_names) + _csv_rows(table)


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------
ROW_FAULT_KINDS = ("bad_type", "out_of_range", "null_key", "duplicate_id", "impossible_date",
                   "malformed_email", "unknown_touchpoint", "unknown_channel")
FILE_FAULT_KINDS = ("truncated", "missing_column", "renamed_column", "wrong_encoding")
_COL_TYPES = {c.name: c.pg_type for e in ENTITIES.values() for c in e.columns}
OUT_OF_RANGE_VALUE = {"nps": "11", "csat": "0", "ces": "9", "overall_satisfaction": "11",
                      "likelihood_to_renew": "6", "rating": "6"}
BAD_EMAILS = ("{}.example.com", "{}@@example.com", "{}@example", "{} @example.com")
UNKNOWN_TOUCHPOINTS = ("kiosk", "billing_v2", "chatbot")
UNKNOWN_CHANNELS = ("fax", "carrier_pigeon", "telex")
MANIFEST_FIELDS = ("file", "row", "entity", "column", "kind", "detail")


class _LazyColumns(dict[str, np.ndarray]):
    """Columns of a table as editable object arrays, converted only when first touched
    (a 1M-row day-1 file must not become 11M Python strings to break a few rows)."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__()
        self.table = table

    def __missing__(self, name: str) -> np.ndarray:
        v = self.table.column(name).to_numpy(zero_copy_only=False).astype(object)
        self[name] = v
        return v


def _renamed(col: str) -> str:
    """A plausible upstream rename (snake_case -> CamelCase), always different."""
    return "".join(p.capitalize() for p in col.split("_"))


class _Faults:
    """Plans, applies and records faults. Row faults and file faults never share a file."""

    def __init__(self, seed: int, rate: float, days: int, fmt: str) -> None:
        self.seed, self.rate, self.fmt = seed, rate, fmt
        self.manifest: list[dict[str, object]] = []
        self.pending_file: list[tuple[int, str, str]] = []  # (day, entity, kind)
        if rate <= 0:
            return
        rng = _rng(seed, "plan")
        n_files = days * len(ENTITIES)
        n_each = max(1, int(round(rate * n_files / 20)))
        kinds = [k for k in FILE_FAULT_KINDS if not (fmt == "parquet" and k == "wrong_encoding")]
        self.last_day = days - 1
        for kind in kinds:
            for _ in range(n_each):
                d = int(rng.integers(0, days // 2 + 1))  # first half: room to defer
                if kind == "wrong_encoding":  # needs Chinese text: names or comments
                    ent = ("customers", "responses")[int(rng.integers(0, 2))]
                else:
                    ent = ENTITY_ORDER[int(rng.integers(0, len(ENTITY_ORDER)))]
                self.pending_file.append((d, ent, kind))

    # --- row faults ---------------------------------------------------------------
    def _kinds_for(self, ent: str) -> list[tuple[str, str]]:
        """(kind, column) pairs that make sense for this entity."""
        e = ENTITIES[ent]
        out: list[tuple[str, str]] = []
        for c in e.columns:
            if c.pg_type in ("integer", "date", "timestamptz", "boolean") or c.pg_type.startswith(
                "numeric"
            ):
                out.append(("bad_type", c.name))
        for c in SCORE_RANGES.get(ent, {}):
            out.append(("out_of_range", c))
        for k in e.key:
            out.append(("null_key", k))
        out.append(("duplicate_id", ",".join(e.key)))
        if e.event_time:
            out.append(("impossible_date", e.event_time))
        if ent == "responses":
            out.append(("impossible_date", "responded_at<invited_at"))
        if ent == "customers":
            out += [("malformed_email", "email"), ("unknown_channel", "acquisition_channel")]
        if ent == "interactions":
            out.append(("unknown_channel", "channel"))
        if "touchpoint_code" in e.column_names:
            out.append(("unknown_touchpoint", "touchpoint_code"))
        return out

    def apply_rows(self, ent: str, day: int, extract: date, table: pa.Table,
                   rel: str) -> pa.Table:
        n = table.num_rows
        if self.rate <= 0 or n == 0:
            return table
        rng = _rng(self.seed, "faults", day * 16 + ENTITY_ORDER.index(ent))
        k = int(rng.binomial(n, self.rate))
        if k == 0:
            return table
        rows = np.sort(rng.choice(n, k, replace=False))
        faulted = np.zeros(n, dtype=bool)
        faulted[rows] = True
        cols = _LazyColumns(table)
        options = self._kinds_for(ent)
        key = ENTITIES[ent].key
        tp_col = cols["touchpoint_code"] if "touchpoint_code" in table.column_names else None
        clean_rows = np.flatnonzero(~faulted)
        for r in rows:
            for _attempt in range(20):
                kind, col = options[int(rng.integers(0, len(options)))]
                if kind == "duplicate_id":
                    earlier = clean_rows[clean_rows < r]
                    if len(earlier) == 0:
                        continue
                    src = int(earlier[int(rng.integers(0, len(earlier)))])
                    for kc in key:
                        cols[kc][r] = cols[kc][src]
                    detail = f"same key as row {src + 1}"
                elif kind == "unknown_touchpoint" and ent in ("invitations", "responses") and (
                    tp_col is None or tp_col[r] is None
                ):
                    continue  # relationship rows have no touchpoint to corrupt
                else:
                    detail = self._corrupt(kind, col, cols, r, rng, extract)
                    if detail is None:
                        continue
                    col = col.split("<")[0]
                self.manifest.append({"file": rel, "row": int(r) + 1, "entity": ent,
                                      "column": col, "kind": kind, "detail": detail})
                break
            else:  # pragma: no cover - every entity has always-applicable kinds
                raise RuntimeError(f"no applicable fault for {ent} row {r}")
        arrays = [pa.array(list(cols[c]), type=pa.string()) if c in cols else table.column(c)
                  for c in table.column_names]
        return pa.Table.from_arrays(arrays, names=table.column_names)

    @staticmethod
    def _corrupt(kind: str, col: str, cols: _LazyColumns, r: int,
                 rng: np.random.Generator, extract: date) -> str | None:
        """Break one value in place; return a human-readable detail, or None if n/a."""
        if kind == "bad_type":
            cols[col][r] = "abc"
            return "abc"
        if kind == "out_of_range":
            cols[col][r] = OUT_OF_RANGE_VALUE[col]
            return f"{col}={OUT_OF_RANGE_VALUE[col]}"
        if kind == "null_key":
            cols[col][r] = None
            return "empty key"
        if kind == "impossible_date" and col == "responded_at<invited_at":
            inv = cols["invited_at"][r]
            t = np.datetime64(inv.replace(" ", "T")) - np.timedelta64(
                int(rng.integers(3600, 48 * 3600)), "s")
            cols["responded_at"][r] = str(t).replace("T", " ")
            return "responded_at before invited_at"
        if kind == "impossible_date":
            later = extract + timedelta(days=int(rng.integers(2, 30)))
            if _COL_TYPES[col] == "date":
                cols[col][r] = later.isoformat()
            else:
                cols[col][r] = f"{later.isoformat()} {int(rng.integers(0, 24)):02d}:17:00"
            return f"after extract date {extract.isoformat()}"
        if kind == "malformed_email":
            local = (cols["email"][r] or "someone@x").split("@")[0]
            bad = BAD_EMAILS[int(rng.integers(0, len(BAD_EMAILS)))].format(local)
            cols["email"][r] = bad
            return bad
        if kind == "unknown_touchpoint":
            v = UNKNOWN_TOUCHPOINTS[int(rng.integers(0, len(UNKNOWN_TOUCHPOINTS)))]
            cols[col][r] = v
            return v
        if kind == "unknown_channel":
            v = UNKNOWN_CHANNELS[int(rng.integers(0, len(UNKNOWN_CHANNELS)))]
            cols[col][r] = v
            return v
        return None  # pragma: no cover

    # --- file faults --------------------------------------------------------------
    def take_file_fault(self, ent: str, day: int, table: pa.Table) -> str | None:
        """The file fault due for this file (planned day reached, file qualifies), if any."""
        for i, (d, e, kind) in enumerate(self.pending_file):
            # deferred to the next file of the entity that qualifies; any entity on the
            # last day, so that each kind is placed at least once whenever possible
            if (e != ent and day < self.last_day) or d > day:
                continue
            if kind == "truncated" and table.num_rows < 2:
                continue
            if kind in ("missing_column", "renamed_column") and table.num_rows < 1:
                continue
            if kind == "wrong_encoding" and not self._has_chinese(table):
                continue
            del self.pending_file[i]
            return kind
        return None

    @staticmethod
    def _has_chinese(table: pa.Table) -> bool:
        for c in table.columns:
            hit = pc.fill_null(pc.match_substring_regex(c, r"[\x{4e00}-\x{9fff}]"), False)
            if pc.any(hit).as_py():
                return True
        return False

    def apply_file(self, kind: str, ent: str, day: int, table: pa.Table, rel: str,
                   path: Path) -> None:
        """Write ``table`` to ``path`` broken in the way ``kind`` says, and record it."""
        rng = _rng(self.seed, "faults", 100_000 + day * 16 + ENTITY_ORDER.index(ent))
        names = table.column_names
        column, detail = "", ""
        if kind == "missing_column":
            # Only a column the contract requires in the file: an optional one may be absent.
            keyless = [c for c in names if c not in ENTITIES[ent].key
                       and c not in ENTITIES[ent].optional_columns]
            column = keyless[int(rng.integers(0, len(keyless)))]
            table = table.drop_columns([column])
            detail = "column absent from header and rows"
            _write_table(table, path, self.fmt)
        elif kind == "renamed_column":
            column = names[int(rng.integers(1, len(names)))]
            new = [(_renamed(c) if c == column else c) for c in names]
            table = table.rename_columns(new)
            detail = f"header says {_renamed(column)!r}"
            _write_table(table, path, self.fmt)
        elif kind == "wrong_encoding":
            data = _csv_bytes(table).decode("utf-8").encode("gb18030")
            path.write_bytes(data)
            detail = "gb18030 bytes, utf-8 expected"
        elif kind == "truncated":
            _write_table(table, path, self.fmt)
            data = path.read_bytes()
            if self.fmt == "csv":
                nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
                n = len(nl) - 1  # data rows; line r (1-based) spans nl[r-1]+1 .. nl[r]
                r = int(rng.integers((n + 1) // 2, n + 1)) if n > 1 else 1
                s_, e_ = int(nl[r - 1]) + 1, int(nl[r])
                cut = s_ + int(rng.integers(1, max(2, e_ - s_)))  # keeps >=1 char, no newline
                detail = f"cut at byte {cut}, inside data row {r}; later rows lost"
            else:
                cut = len(data) // 2
                detail = f"cut at byte {cut} of {len(data)}"
            path.write_bytes(data[:cut])
        self.manifest.append({"file": rel, "row": "", "entity": ent, "column": column,
                              "kind": kind, "detail": detail})

    def write_manifest(self, out: Path) -> Path:
        d = out / "_faults"
        d.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.manifest)
        (d / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        unplaced = [{"planned_day": p[0], "entity": p[1], "kind": p[2]} for p in self.pending_file]
        doc = {"rate": self.rate, "row_fault_kinds": list(ROW_FAULT_KINDS),
               "file_fault_kinds": list(FILE_FAULT_KINDS), "faults": self.manifest,
               "unplaced_file_faults": unplaced}
        (d / "manifest.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        return d / "manifest.csv"


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "csv":
        with open(path, "wb") as f:
            f.write(_csv_header(table.column_names))
            for lo in range(0, table.num_rows, CSV_CHUNK_ROWS):
                f.write(_csv_rows(table.slice(lo, CSV_CHUNK_ROWS)))
    else:
        pq.write_table(table, path, compression="snappy")


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------
Batch = dict[str, np.ndarray]


def _concat(batches: list[Batch]) -> Batch | None:
    if not batches:
        return None
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _take_rows(b: Batch, idx: np.ndarray) -> Batch:
    return {k: v[idx] for k, v in b.items()}


class _Generator:
    """Holds the state of one run; ``run`` streams the window day by day."""

    def __init__(self, out: Path, customers: int, days: int, start: date, seed: int,
                 fmt: str, faults: float) -> None:
        self.out, self.days, self.start, self.seed, self.fmt = out, days, start, seed, fmt
        self.cat = load_catalogue()
        self.tp = {c: i for i, c in enumerate(self.cat.codes)}
        self.t0 = (start - EPOCH).days * DAY  # epoch seconds of window start
        self.pop = _Population(seed, customers, days)
        self.faults = _Faults(seed, faults, days, fmt)
        # rows waiting for the extract of their day; "_events" = scheduled onboarding steps
        self.pending: dict[str, dict[int, list[Batch]]] = {e: {} for e in ENTITIES}
        self.pending["_events"] = {}
        self.next_id = {"interactions": 1, "invitations": 1, "responses": 1, "orders": 1}
        self.summary = GenerationSummary(out=out, start=start,
                                         end=start + timedelta(days=days - 1), days=days,
                                         fmt=fmt, customers_base=customers,
                                         customers_total=self.pop.n,
                                         rows={e: 0 for e in ENTITIES})
        self.params = [TP_PARAMS[c] for c in self.cat.codes]
        self.tp_mean = np.array([p["mean"] for p in self.params])
        self.w_os = np.array([p["w_os"] for p in self.params])
        self.w_ltr = np.array([p["w_ltr"] for p in self.params])
        chan = np.array([TP_CHANNEL_P[c] for c in self.cat.codes], dtype=float)
        self.chan_cum = np.cumsum(chan / chan.sum(1, keepdims=True), axis=1)
        self.unres_base = np.array([p["unres"] for p in self.params])
        self.fcr_p = np.array([p["fcr"] for p in self.params])
        self.wait_med = np.array([p["wait"] for p in self.params], dtype=float)
        self.wait_s = np.array([p["wait_s"] for p in self.params])
        self.handle_med = np.array([p["handle"] for p in self.params], dtype=float)
        self.handle_s = np.array([p["handle_s"] for p in self.params])
        # churn order: who cancels on which day
        c = self.pop.churn_abs
        in_window = np.flatnonzero((c >= 0) & (c < days))
        self.churn_sorted = in_window[np.argsort(c[in_window], kind="stable")]
        self.churn_day_bounds = np.searchsorted(c[self.churn_sorted], np.arange(days + 1))
        self.signup_bounds = np.concatenate(
            [[customers], customers + np.cumsum(self.pop.signups_per_day)]
        )

    # --- helpers ------------------------------------------------------------------
    def secs(self, t_abs: np.ndarray) -> np.ndarray:
        """Window-relative days (float) -> epoch seconds (int)."""
        return self.t0 + np.floor(np.asarray(t_abs) * DAY).astype(np.int64)

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        return (np.asarray(ts) - self.t0) // DAY

    def schedule(self, entity: str, export_day: np.ndarray, batch: Batch) -> None:
        """Queue rows for the extract of their export day (dropped past the window)."""
        if len(export_day) == 0:
            return
        ok = export_day < self.days
        export_day, batch = export_day[ok], _take_rows(batch, np.flatnonzero(ok))
        for d in np.unique(export_day):
            self.pending[entity].setdefault(int(d), []).append(
                _take_rows(batch, np.flatnonzero(export_day == d))
            )

    def schedule_with_warts(self, entity: str, ts: np.ndarray, batch: Batch,
                            rng: np.random.Generator, late: bool) -> None:
        """Export on the event's day; some late (1-2 days), some re-exported unchanged."""
        export = self.day_of(ts)
        u = rng.random(len(export))
        if late:
            is_late = u < P_LATE
            export = export + is_late * rng.integers(1, 3, len(export))
        else:
            is_late = np.zeros(len(export), dtype=bool)
        self.schedule(entity, export, batch)
        again = np.flatnonzero(~is_late & (u > 1 - P_REEXPORT))
        if len(again):
            self.schedule(entity, export[again] + rng.integers(1, 4, len(again)),
                          _take_rows(batch, again))

    # --- daily events -------------------------------------------------------------
    def interactions_for(self, day: int) -> Batch | None:
        """Usage contacts of customers active all day, plus scheduled onboarding steps."""
        p = self.pop
        rng = _rng(self.seed, "usage", day)
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        custs: list[np.ndarray] = []
        tps: list[np.ndarray] = []
        times: list[np.ndarray] = []
        gaps: list[np.ndarray] = []  # onboarding steps: real wait since the previous step
        na = len(active)

        def add(c: np.ndarray, tp: int, lo: float = 7 / 24, hi: float = 22 / 24) -> None:
            custs.append(c)
            tps.append(np.full(len(c), tp, dtype=np.int8))
            times.append(day + rng.uniform(lo, hi, len(c)))
            gaps.append(np.full(len(c), -1.0))

        if na:
            for code in ("app_usage", "support_call", "store_visit", "field_repair"):
                rate = TP_PARAMS[code]["rate"]
                if code in ("support_call", "field_repair"):
                    # customers with unresolved problems call and need repairs more often
                    cand = active[rng.integers(0, na, rng.poisson(na * rate * 3.5))]
                    w = np.exp(0.4 * p.unresolved_propensity[cand] - 1.2)
                    cand = cand[rng.random(len(cand)) < np.minimum(w, 1.0)]
                else:
                    cand = active[rng.integers(0, na, rng.poisson(na * rate))]
                lo, hi = (0.0, 1.0) if code == "app_usage" else (7 / 24, 22 / 24)
                add(np.sort(cand), self.tp[code], lo, hi)
            bill = active[(day - p.bill_phase[active]) % 30 == 0]
            add(bill[rng.random(len(bill)) < BILLING_CONTACT_P], self.tp["billing"])
            tenure_mod = np.floor(day - p.signup_abs[active]) % 365
            near = active[tenure_mod >= 335]
            add(near[rng.random(len(near)) < RENEWAL_CONTACTS_PER_ANNIVERSARY / 30],
                self.tp["renewal"])
        # new signups today: apply online now, then approval -> installation -> call
        lo, hi = self.signup_bounds[day], self.signup_bounds[day + 1]
        new = np.arange(lo, hi)
        if len(new):
            t = p.signup_abs[new]
            custs.append(new)
            tps.append(np.full(len(new), self.tp["apply_online"], dtype=np.int8))
            times.append(t)
            gaps.append(np.full(len(new), -1.0))
            ro = _rng(self.seed, "onboard", day)
            steps = []
            for code in ("approval", "installation"):  # wait = time since previous step
                j = self.tp[code]
                gap = np.exp(np.log(self.wait_med[j]) + self.wait_s[j] * ro.normal(0, 1, len(new)))
                t = t + np.round(gap) / DAY
                steps.append((j, t, np.round(gap)))
            t = t + ro.uniform(1, 10, len(new))
            steps.append((self.tp["onboarding_call"], t, np.full(len(new), -1.0)))
            for j, tt, gap in steps:
                ok = tt < p.churn_abs[new]
                self.schedule("_events", np.floor(tt[ok]).astype(np.int64),
                              {"cust": new[ok], "tp": np.full(ok.sum(), j, dtype=np.int8),
                               "t": tt[ok], "gap": gap[ok]})
        ev = self.pending["_events"].pop(day, [])
        if ev:
            e = _concat(ev)
            assert e is not None
            custs.append(e["cust"])
            tps.append(e["tp"])
            times.append(e["t"])
            gaps.append(e["gap"])
        if not custs:
            return None
        cust = np.concatenate(custs).astype(np.int64)
        if len(cust) == 0:
            return None
        tp = np.concatenate(tps)
        t = np.concatenate(times)
        gap = np.concatenate(gaps)
        ts = self.secs(t)
        order = np.lexsort((cust, ts))
        cust, tp, t, ts, gap = cust[order], tp[order], t[order], ts[order], gap[order]
        n = len(cust)
        ra = _rng(self.seed, "usage", 10_000 + day)
        ch = (ra.random(n)[:, None] > self.chan_cum[tp]).sum(1).clip(0, len(CHANNELS) - 1)
        wait = np.exp(np.log(self.wait_med[tp]) + self.wait_s[tp] * ra.normal(0, 1, n))
        wait = np.where(gap >= 0, gap, wait)  # onboarding chain: the real gap
        handle = np.exp(np.log(self.handle_med[tp]) + self.handle_s[tp] * ra.normal(0, 1, n))
        logit = self.unres_base[tp] + UNRESOLVED_LOADING * p.unresolved_propensity[cust]
        resolved = ra.random(n) >= 1 / (1 + np.exp(-logit))
        fcr = resolved & (ra.random(n) < self.fcr_p[tp])
        ids = np.arange(self.next_id["interactions"], self.next_id["interactions"] + n)
        self.next_id["interactions"] += n
        p.experienced[cust, tp] = True
        return {"iid": ids, "cust": cust, "tp": tp, "ch": ch.astype(np.int8), "ts": ts,
                "t": t, "wait": np.round(wait).astype(np.int64),
                "handle": np.maximum(np.round(handle), 5).astype(np.int64),
                "resolved": resolved, "fcr": fcr}

    def surveys_for(self, day: int, inter: Batch | None) -> None:
        """Invitations (transactional after contacts, relationship every ~90 days) and the
        answers they get, queued for the days they are sent and answered."""
        p = self.pop
        rng = _rng(self.seed, "survey", day)
        parts: list[Batch] = []
        if inter is not None:
            pick = np.flatnonzero(rng.random(len(inter["iid"])) < P_INVITE_AFTER_INTERACTION)
            sent = inter["t"][pick] + rng.uniform(0.02, 1.0, len(pick))
            ok = sent < p.churn_abs[inter["cust"][pick]]
            pick, sent = pick[ok], sent[ok]
            parts.append({"cust": inter["cust"][pick], "stype": np.zeros(len(pick), np.int8),
                          "iid": inter["iid"][pick], "tp": inter["tp"][pick].astype(np.int8),
                          "unresolved": ~inter["resolved"][pick], "t": sent})
        active = np.flatnonzero((p.signup_abs < day - 30) & (p.churn_abs > day + 1))
        rel = active[(day - p.rel_phase[active]) % RELATIONSHIP_EVERY_DAYS == 0]
        if len(rel):
            parts.append({"cust": rel, "stype": np.ones(len(rel), np.int8),
                          "iid": np.full(len(rel), -1, dtype=np.int64),
                          "tp": np.full(len(rel), -1, dtype=np.int8),
                          "unresolved": np.zeros(len(rel), dtype=bool),
                          "t": day + rng.uniform(9 / 24, 10 / 24, len(rel))})
        inv = _concat(parts)
        if inv is None or len(inv["cust"]) == 0:
            return
        n = len(inv["cust"])
        inv["vid"] = np.arange(self.next_id["invitations"], self.next_id["invitations"] + n)
        self.next_id["invitations"] += n
        inv["ts"] = self.secs(inv["t"])
        self.schedule_with_warts("invitations", inv["ts"], inv,
                                 _rng(self.seed, "warts", 3 * day), late=False)

        # Who answers, and when (0-5 days later, before churning).
        cust = inv["cust"]
        prob = np.where(inv["t"] < p.silent_onset[cust], p.resp_p[cust], 0.0)  # onset=inf
        answered = rng.random(n) < prob
        lag = np.minimum(rng.exponential(0.8, n), 4.99) + 60 / DAY
        t_resp = inv["t"] + lag
        keep = np.flatnonzero(answered & (t_resp < p.churn_abs[cust]))
        if len(keep) == 0:
            return
        r = _take_rows(inv, keep)
        r["t_resp"] = t_resp[keep]
        self._answers(day, r)

    def _answers(self, day: int, r: Batch) -> None:
        """Scores, comments and item ratings that carry the planted structure."""
        p = self.pop
        rng = _rng(self.seed, "ratings", day)
        n = len(r["cust"])
        cust = r["cust"]
        n_tp = len(self.cat.codes)
        # latent item ratings for every touchpoint, then keep what the survey asks
        lat = (self.tp_mean[None, :] + SEGMENT_RATING_OFFSET[p.segment[cust]][:, None]
               + p.general[cust][:, None]
               + PRICE_SENSITIVE_RATING_BUMP * p.price_sensitive[cust][:, None]
               + rng.normal(0, RATING_NOISE_SD, (n, n_tp)))
        lat[:, self.tp["billing"]] += BILLING_EXPERIENCE_LOADING * p.billing_experience[cust]
        trans = r["stype"] == 0
        rows = np.arange(n)
        tp_t = np.where(trans, r["tp"], 0).astype(np.int64)
        lat[rows[trans], tp_t[trans]] -= UNRESOLVED_RATING_DROP * r["unresolved"][trans]
        ratings = np.clip(np.rint(lat), 1, 5).astype(np.int64)
        asked = np.zeros((n, n_tp), dtype=bool)
        asked[rows[trans], tp_t[trans]] = True
        asked[~trans] = p.experienced[cust[~trans]]

        centred = (ratings - self.tp_mean[None, :]) * asked
        os_ = np.clip(np.rint(OS_BASE + centred @ self.w_os + rng.normal(0, OS_NOISE, n)), 1, 10)
        ltr = np.clip(np.rint(LTR_BASE + centred @ self.w_ltr
                              - PRICE_SENSITIVE_LTR_DROP * p.price_sensitive[cust]
                              + rng.normal(0, LTR_NOISE, n)), 1, 5)
        r_tp = ratings[rows, tp_t]
        csat_t = np.clip(np.rint(r_tp + rng.normal(0, 0.5, n)), 1, 5)
        csat_r = np.clip(np.rint(1 + (os_ - 1) * 4 / 9 + rng.normal(0, 0.5, n)), 1, 5)
        ces = np.clip(np.rint(4.6 + 0.8 * (r_tp - 3.5) - 0.8 * r["unresolved"]
                              + rng.normal(0, 0.8, n)), 1, 7)
        nps_t = 7 + 1.2 * (r_tp - 3.5) + 2 * p.general[cust] + rng.normal(0, 1.2, n)
        nps_r = os_ - 0.3 + rng.normal(0, 1.0, n)
        nps = np.clip(np.rint(np.where(trans, nps_t, nps_r)), 0, 10)
        r["nps"] = nps.astype(np.int64)
        r["csat"] = np.where(trans, csat_t, csat_r).astype(np.int64)
        r["ces"] = np.where(trans, ces, -1).astype(np.int64)
        r["os"] = np.where(trans, -1, os_).astype(np.int64)
        r["ltr"] = np.where(trans, -1, ltr).astype(np.int64)
        # sentiment of the comment follows the main score of the survey
        score = np.where(trans, (r["csat"] - 1) / 4, (os_ - 1) / 9)
        senti = np.where(score >= 0.75, 2, np.where(score <= 0.35, 0, 1))
        rc = _rng(self.seed, "comments", day)
        has = rc.random(n) < P_COMMENT + 0.1 * (senti == 0)
        zh = p.comment_zh[cust]
        pick = rc.random(n)
        comment = np.full(n, None, dtype=object)
        lang = np.full(n, None, dtype=object)
        for i in np.flatnonzero(has):
            lg = "zh" if zh[i] else "en"
            s = ("neg", "mid", "pos")[senti[i]]
            tmpl = COMMENTS[(lg, s)]
            text = tmpl[int(pick[i] * len(tmpl))]
            if "{tp}" in text:
                j = int(tp_t[i]) if trans[i] else int(rc.integers(0, n_tp))
                code = self.cat.codes[j]
                name = TP_NAME_ZH[code] if lg == "zh" else self.cat.names[j].lower()
                text = text.replace("{tp}", name)
            comment[i], lang[i] = text, lg
        r["comment"], r["lang"] = comment, lang
        r["rid"] = np.arange(self.next_id["responses"], self.next_id["responses"] + n)
        self.next_id["responses"] += n
        r["ts_resp"] = self.secs(r["t_resp"])
        resp = {k: r[k] for k in ("rid", "vid", "cust", "stype", "tp", "ts", "ts_resp", "nps",
                                  "csat", "ces", "os", "ltr", "comment", "lang")}
        self.schedule_with_warts("responses", r["ts_resp"], resp,
                                 _rng(self.seed, "warts", 3 * day + 1), late=False)
        ri, ti = np.nonzero(asked)
        items = {"rid": r["rid"][ri], "cust": cust[ri], "tp": ti.astype(np.int8),
                 "rating": ratings[ri, ti], "ts_resp": r["ts_resp"][ri]}
        self.schedule("item_ratings", self.day_of(items["ts_resp"]), items)

    def orders_for(self, day: int) -> None:
        p = self.pop
        rng = _rng(self.seed, "orders", day)
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        dev = new[rng.random(len(new)) < P_DEVICE_AT_SIGNUP]
        addon = np.zeros(0, dtype=np.int64)
        if len(active):
            k = rng.poisson(len(active) * ORDER_RATE)
            addon = np.sort(active[rng.integers(0, len(active), k)])
        cust = np.concatenate([dev, addon]).astype(np.int64)
        n = len(cust)
        if n == 0:
            return
        amount = np.concatenate([np.exp(rng.normal(np.log(250), 0.5, len(dev))),
                                 np.exp(rng.normal(np.log(25), 0.7, len(addon)))])
        oid = np.arange(self.next_id["orders"], self.next_id["orders"] + n)
        self.next_id["orders"] += n
        b = {"oid": oid, "cust": cust, "day": np.full(n, day, dtype=np.int64),
             "cents": np.maximum(np.round(amount * 100), 100).astype(np.int64)}
        ts = self.t0 + day * DAY + np.zeros(n, dtype=np.int64)
        self.schedule_with_warts("orders", ts, b, _rng(self.seed, "warts", 3 * day + 2),
                                 late=False)

    def crm_changes_for(self, day: int) -> tuple[Batch, Batch]:
        """Customers and subscriptions rows of the day (full base on day 1)."""
        p = self.pop
        rng = _rng(self.seed, "updates", day)
        cust_parts: list[Batch] = []
        sub_parts: list[Batch] = []
        if day == 0:
            base = np.arange(p.n_base)
            cust_parts.append({"cust": base, "ts": self.secs(p.base_updated[base])})
            sub_parts.append({"cust": base, "ts": self.secs(p.signup_abs[base])})
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        ts_new = self.secs(p.signup_abs[new])
        cust_parts.append({"cust": new, "ts": ts_new})
        sub_parts.append({"cust": new, "ts": ts_new})
        # attribute changes of active customers
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        if len(active):
            who = np.unique(active[rng.integers(0, len(active),
                                                rng.poisson(len(active) * UPDATE_RATE))])
            kind = rng.choice(4, len(who), p=[0.25, 0.15, 0.35, 0.25])
            ts = self.secs(day + rng.uniform(8 / 24, 20 / 24, len(who)))
            # plan: basic <-> plus only, so plan_premium (a covariate) never changes
            plan_chg = who[(kind == 0) & (p.plan[who] < 2)]
            old = p.plan[plan_chg].astype(np.int64)
            p.plan[plan_chg] = 1 - old
            p.value_cents[plan_chg] = np.round(
                p.value_cents[plan_chg] * PLAN_PRICE[1 - old] / PLAN_PRICE[old]).astype(np.int64)
            moved = who[kind == 1]
            p.region[moved] = (p.region[moved] + rng.integers(1, 4, len(moved))) % 4
            flip = who[kind == 2]
            p.consent[flip] = ~p.consent[flip]
            mail = who[kind == 3]
            p.email_ver[mail] += 1
            cust_parts.append({"cust": who, "ts": ts})
            sub_parts.append({"cust": plan_chg, "ts": ts[np.isin(who, plan_chg)]})
        # cancellations today
        lo, hi = self.churn_day_bounds[day], self.churn_day_bounds[day + 1]
        gone = self.churn_sorted[lo:hi]
        sub_parts.append({"cust": gone, "ts": self.secs(p.churn_abs[gone])})
        return _dedupe(_concat(cust_parts)), _dedupe(_concat(sub_parts))

    # --- formatting ----------------------------------------------------------------
    def table(self, ent: str, b: Batch) -> pa.Table:
        p, cat = self.pop, self.cat
        if ent == "customers":
            c = b["cust"]
            cols = {
                "customer_id": _ids("C", c + 1, 8),
                "full_name": self._names(c),
                "email": self._emails(c),
                "phone": self._phones(c),
                "region": _take(REGIONS, p.region[c]),
                "segment": _take(SEGMENTS, p.segment[c]),
                "plan": _take(PLANS, p.plan[c]),
                "acquisition_channel": _take(CHANNELS, p.acq[c]),
                "marketing_consent": _bool(p.consent[c]),
                "signup_date": _date(self.secs(p.signup_abs[c]) // DAY),
                "updated_at": _ts(b["ts"]),
            }
        elif ent == "subscriptions":
            c = b["cust"]
            churn_ts = self.secs(np.minimum(p.churn_abs[c], 1e7))
            cancelled = churn_ts <= b["ts"]
            end_day = churn_ts // DAY
            # Yearly terms billed monthly: the next anniversary of the start is the renewal.
            start_day = self.secs(p.signup_abs[c]) // DAY
            renew_day = start_day + 365 * ((b["ts"] // DAY - start_day) // 365 + 1)
            cols = {
                "subscription_id": _ids("S", c + 1, 8),
                "customer_id": _ids("C", c + 1, 8),
                "plan": _take(PLANS, p.plan[c]),
                "status": _take(("active", "cancelled"), cancelled.astype(np.int64)),
                "start_date": _date(self.secs(p.signup_abs[c]) // DAY),
                "end_date": _take_date(end_day, cancelled),
                "cancel_reason": _take(CANCEL_REASONS,
                                       np.where(cancelled, p.cancel_reason[c], -1)),
                "monthly_value": _money(p.value_cents[c]),
                "updated_at": _ts(b["ts"]),
                "renewal_date": _take_date(renew_day, ~cancelled),
                "billing_period": _take(("month",), np.zeros(len(c), dtype=np.int64)),
                "quantity": _int(np.ones(len(c), dtype=np.int64)),
            }
        elif ent == "orders":
            cols = {
                "order_id": _ids("O", b["oid"], 9),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "order_date": _date(b["day"] + self.t0 // DAY),
                "amount": _money(b["cents"]),
            }
        elif ent == "interactions":
            cols = {
                "interaction_id": _ids("I", b["iid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "channel": _take(CHANNELS, b["ch"]),
                "occurred_at": _ts(b["ts"]),
                "wait_seconds": _int(b["wait"]),
                "handle_seconds": _int(b["handle"]),
                "resolved": _bool(b["resolved"]),
                "first_contact_resolution": _bool(b["fcr"]),
            }
        elif ent == "invitations":
            iid = _ids("I", np.maximum(b["iid"], 0), 10)
            cols = {
                "invitation_id": _ids("V", b["vid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "survey_type": _take(SURVEY_TYPES, b["stype"]),
                "interaction_id": pc.if_else(pa.array(b["iid"] < 0), pa.scalar(None, pa.string()),
                                             iid),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "sent_at": _ts(b["ts"]),
            }
        elif ent == "responses":
            cols = {
                "response_id": _ids("R", b["rid"], 10),
                "invitation_id": _ids("V", b["vid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "survey_type": _take(SURVEY_TYPES, b["stype"]),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "invited_at": _ts(b["ts"]),
                "responded_at": _ts(b["ts_resp"]),
                "nps": _int(b["nps"], 0),
                "csat": _int(b["csat"], 0),
                "ces": _int(b["ces"], 0),
                "overall_satisfaction": _int(b["os"], 0),
                "likelihood_to_renew": _int(b["ltr"], 0),
                "comment": pa.array(list(b["comment"]), type=pa.string()),
                "comment_language": pa.array(list(b["lang"]), type=pa.string()),
            }
        else:  # item_ratings
            cols = {
                "response_id": _ids("R", b["rid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "item_code": _take(cat.items, b["tp"]),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "dimension": _take(cat.dimensions, b["tp"]),
                "rating": _int(b["rating"]),
                "responded_at": _ts(b["ts_resp"]),
            }
        names = ENTITIES[ent].column_names
        assert list(cols) == names, (ent, list(cols))
        return pa.Table.from_arrays([cols[k] for k in names], names=names)

    def _names(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        a, b = p.name_a[c].astype(np.int64), p.name_b[c].astype(np.int64)
        # both branches are built for every row (modulo keeps the unused one in range)
        en = pc.binary_join_element_wise(_take(EN_FIRST, a % len(EN_FIRST)),
                                         _take(EN_LAST, b % len(EN_LAST)), " ")
        cn = pc.binary_join_element_wise(_take([s for s, _ in CN_SURNAME], a % len(CN_SURNAME)),
                                         _take([g for g, _ in CN_GIVEN], b % len(CN_GIVEN)), "")
        return pc.if_else(pa.array(p.is_cn[c]), cn, en)

    def _emails(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        ascii_first = [_ascii(x) for x in EN_FIRST]
        ascii_last = [_ascii(x) for x in EN_LAST]
        is_cn = pa.array(p.is_cn[c])
        na, nb = p.name_a[c].astype(np.int64), p.name_b[c].astype(np.int64)
        # Chinese names: given.surname in pinyin; others first.last
        a = pc.if_else(is_cn, _take([g for _, g in CN_GIVEN], nb % len(CN_GIVEN)),
                       _take(ascii_first, na % len(EN_FIRST)))
        b = pc.if_else(is_cn, _take([s for _, s in CN_SURNAME], na % len(CN_SURNAME)),
                       _take(ascii_last, nb % len(EN_LAST)))
        ver = p.email_ver[c].astype(np.int64)
        sep = _take(EMAIL_SEPS, (p.email_sep[c] + ver) % len(EMAIL_SEPS))
        num = (p.email_num[c].astype(np.int64) + 37 * ver) % 1000
        with_num = p.email_has_num[c] | (ver > 0)
        num_s = pc.if_else(pa.array(with_num), pa.array(num).cast(pa.string()), "")
        dom = _take(EMAIL_DOMAINS, (p.email_dom[c] + ver) % len(EMAIL_DOMAINS))
        local = pc.binary_join_element_wise(a, sep, b, num_s, "")
        return pc.binary_join_element_wise(local, dom, "@")

    def _phones(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        area = pa.array(p.phone_area[c].astype(np.int64)).cast(pa.string())
        line = pc.utf8_lpad(pa.array(p.phone_line[c].astype(np.int64)).cast(pa.string()), 4, "0")
        us = pc.binary_join_element_wise("+1-", area, "-555-", line, "")
        cn = pc.binary_join_element_wise("+86-", area, "-5550-", line, "")
        return pc.if_else(pa.array(p.is_cn[c]), cn, us)

    # --- run --------------------------------------------------------------------------
    def write_day(self, day: int, ent: str, b: Batch | None) -> None:
        extract = self.start + timedelta(days=day)
        src = ENTITIES[ent].source
        d = self.out / src / ent / extract.isoformat()
        d.mkdir(parents=True, exist_ok=True)
        suffix = "csv" if self.fmt == "csv" else "parquet"
        path = d / f"{ent}_{extract.strftime('%Y%m%d')}.{suffix}"
        rel = path.relative_to(self.out).as_posix()
        n = 0 if b is None else len(next(iter(b.values())))
        if b is not None and n > CSV_CHUNK_ROWS and self.faults.rate <= 0:
            # Big clean file (day 1 = the whole base): format and write it in slices so
            # memory stays at one slice of strings, not the whole file.
            self._write_in_slices(ent, b, n, path)
            self.summary.rows[ent] += n
            self.summary.files.append(rel)
            return
        if b is None or n == 0:
            table = pa.Table.from_arrays(
                [pa.array([], type=pa.string()) for _ in ENTITIES[ent].column_names],
                names=ENTITIES[ent].column_names)
        else:
            table = self.table(ent, b)
        self.summary.rows[ent] += table.num_rows
        self.summary.files.append(rel)
        kind = self.faults.take_file_fault(ent, day, table) if self.faults.rate > 0 else None
        if kind is not None:
            self.faults.apply_file(kind, ent, day, table, rel, path)
            return
        table = self.faults.apply_rows(ent, day, extract, table, rel)
        _write_table(table, path, self.fmt)

    def _write_in_slices(self, ent: str, b: Batch, n: int, path: Path) -> None:
        slices = (_take_rows(b, np.arange(lo, min(n, lo + CSV_CHUNK_ROWS)))
                  for lo in range(0, n, CSV_CHUNK_ROWS))
        if self.fmt == "csv":
            with open(path, "wb") as f:
                f.write(_csv_header(ENTITIES[ent].column_names))
                for part in slices:
                    f.write(_csv_rows(self.table(ent, part)))
        else:
            schema = pa.schema([(c, pa.string()) for c in ENTITIES[ent].column_names])
            with pq.ParquetWriter(path, schema, compression="snappy") as w:
                for part in slices:
                    w.write_table(self.table(ent, part))

    def run(self, progress: Callable[[int, int], None] | None) -> GenerationSummary:
        sort_keys = {"customers": ("ts", "cust"), "subscriptions": ("ts", "cust"),
                     "orders": ("day", "oid"), "interactions": ("ts", "iid"),
                     "invitations": ("ts", "vid"), "responses": ("ts_resp", "rid"),
                     "item_ratings": ("ts_resp", "rid", "tp")}
        for day in range(self.days):
            customers, subs = self.crm_changes_for(day)
            self.orders_for(day)
            inter = self.interactions_for(day)
            if inter is not None:
                self.schedule_with_warts("interactions", inter["ts"],
                                         {k: v for k, v in inter.items() if k != "t"},
                                         _rng(self.seed, "warts", 100_000 + day), late=True)
            self.surveys_for(day, inter)
            for ent in ENTITY_ORDER:
                if ent == "customers":
                    b = customers
                elif ent == "subscriptions":
                    b = subs
                else:
                    b = _concat(self.pending[ent].pop(day, []))
                if b is not None and ent in sort_keys:
                    keys = [b[k] for k in reversed(sort_keys[ent])]
                    b = _take_rows(b, np.lexsort(keys))
                self.write_day(day, ent, b)
            if progress is not None:
                progress(day + 1, self.days)
        return self.summary


def _take_date(epoch_days: np.ndarray, valid: np.ndarray) -> pa.Array:
    d = np.asarray(epoch_days, dtype=np.int32)
    return pa.array(d, type=pa.date32(), mask=~np.asarray(valid)).cast(pa.string())


def _ascii(s: str) -> str:
    """E-mail local part from a name: lower-case ASCII letters only."""
    table = str.maketrans({"ü": "ue", "ö": "oe", "ä": "ae"})
    return "".join(ch for ch in s.lower().translate(table) if "a" <= ch <= "z")


def _dedupe(b: Batch | None) -> Batch | None:
    """One row per customer per extract: the latest change wins (state is end-of-day)."""
    if b is None or len(b["cust"]) == 0:
        return b
    order = np.lexsort((b["ts"], b["cust"]))
    s = _take_rows(b, order)
    last = np.ones(len(s["cust"]), dtype=bool)
    last[:-1] = s["cust"][1:] != s["cust"][:-1]
    return _take_rows(s, np.flatnonzero(last))


# --------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------
COVARIATE_DOC = {
    "plan_premium": ("binary", "P=0.20 at signup",
                     "customers.plan / subscriptions.plan == 'premium' (plan changes in the "
                     "window are basic<->plus only, so it stays constant)"),
    "segment_smb": ("binary", "P=0.30", "customers.segment == 'smb'"),
    "log_monthly_value": ("continuous", "standardised ln(monthly value at signup)",
                          "(ln(subscriptions.monthly_value at signup) - mean) / sd with the "
                          "mean and sd below; later plan changes rescale the value"),
    "billing_experience": ("latent", "N(0,1)",
                           "billing item ratings (billing_clarity), CSAT/NPS of billing "
                           "transactional surveys: rating latent += 0.8 * billing_experience"),
    "unresolved_propensity": ("latent", "N(0,1)",
                              "interactions.resolved = false with logit = touchpoint base + "
                              "0.9 * unresolved_propensity; also more support calls and "
                              "field repairs"),
    "goes_silent": ("binary", "P=0.10",
                    "answers 85% of surveys until an onset date (30-120 days before "
                    "churning or mid-window), then none"),
    "price_sensitive": ("binary", "P=0.12",
                        "mercenaries: ratings +0.4 (satisfied), likelihood_to_renew -1, "
                        "cancel_reason mostly price/competitor"),
}


def _write_truth(g: _Generator) -> tuple[Path, Path]:
    p, out = g.pop, g.out / "_truth"
    out.mkdir(parents=True, exist_ok=True)
    horizon = float(g.days)
    tenure_end = horizon - p.signup_abs
    event = p.t_churn < tenure_end
    start_days = (g.start - EPOCH).days
    signup_day = g.day_of(g.secs(p.signup_abs)) + start_days
    churn_day = np.floor(p.churn_abs).astype(np.int64) + start_days
    silent = np.isfinite(p.silent_onset)
    onset_day = np.floor(np.where(silent, p.silent_onset, 0)).astype(np.int64) + start_days
    cols: dict[str, pa.Array] = {
        "customer_id": _ids("C", np.arange(p.n) + 1, 8),
        **{k: pa.array(getattr(p, k).astype(np.int8) if COVARIATE_DOC[k][0] == "binary"
                       else getattr(p, k)) for k in COVARIATES},
        "linear_predictor": pa.array(p.lp),
        "risk_score": pa.array(np.exp(p.lp)),
        "signup_date": pa.array(signup_day.astype(np.int32), type=pa.date32()),
        "entry_days": pa.array(np.maximum(-p.signup_abs, 0.0)),
        "churn_time_days": pa.array(p.t_churn),
        "duration_days": pa.array(np.where(event, p.t_churn, tenure_end)),
        "event": pa.array(event.astype(np.int8)),
        "churn_date": pa.array(np.minimum(churn_day, 2**31 - 1).astype(np.int32),
                               type=pa.date32(), mask=~event),
        "segment": _take(SEGMENTS, p.segment),
        "plan_at_signup": _take(PLANS, p.plan0),
        "monthly_value_at_signup": pa.array(p.value0_cents / 100.0),
        "silence_onset_date": pa.array(onset_day.astype(np.int32), type=pa.date32(),
                                       mask=~silent),
        "in_base_at_start": pa.array(np.arange(p.n) < p.n_base),
    }
    cust_path = out / "customers.parquet"
    pq.write_table(pa.Table.from_pydict(cols), cust_path)

    base = p.n_base
    base_churn_1y = None
    if base:
        t_start = -p.signup_abs[:base]
        # P(churn within a year | alive at start), from the model, averaged over the base
        lam, k = WEIBULL_LAM, WEIBULL_K
        cum = ((t_start + 365) / lam) ** k - (t_start / lam) ** k
        base_churn_1y = float(np.mean(1 - np.exp(-cum * np.exp(p.lp[:base]))))
    imp = g.w_os
    sat = g.tp_mean
    quad = {}
    for j, code in enumerate(g.cat.codes):
        hi_imp, hi_sat = imp[j] >= np.median(imp), sat[j] >= np.median(sat)
        quad[code] = ("fix_first" if hi_imp and not hi_sat else
                      "possible_overkill" if hi_sat and not hi_imp else
                      "keep_up" if hi_imp else "low_priority")
    truth = {
        "schema_version": 1,
        "generator": "flows.demo",
        "seed": g.seed,
        "window": {"start": g.start.isoformat(), "end": g.summary.end.isoformat(),
                   "days": g.days, "censored_at_days": g.days},
        "customers": {"base_at_start": p.n_base, "new_in_window": p.n - p.n_base,
                      "total": p.n, "events_in_window": int(event.sum())},
        "hazard_model": {
            "form": "h(t|x) = (k/lam) * (t/lam)^(k-1) * exp(x . beta)",
            "time_unit": "days since signup",
            "baseline": {"distribution": "weibull", "k": WEIBULL_K, "lam": WEIBULL_LAM},
            "covariates": [
                {"name": k, "beta": BETAS[k], "type": COVARIATE_DOC[k][0],
                 "distribution": COVARIATE_DOC[k][1], "expressed_as": COVARIATE_DOC[k][2]}
                for k in COVARIATES
            ],
            "betas": BETAS,
            "log_monthly_value_standardisation": {"mean": LOG_VALUE_MEAN, "sd": LOG_VALUE_SD},
            "left_truncation": "customers in the base at window start survived to it; "
                               "entry_days = tenure at start (use entry_col in a Cox fit)",
            "censoring": "administrative, at the end of the window",
            "expected_base_churn_within_1y": base_churn_1y,
            "churn_in_extracts": "subscriptions re-exported with status=cancelled, end_date, "
                                 "cancel_reason on the churn date; no contacts after it",
        },
        "touchpoints": {
            code: {"importance_weight_overall_satisfaction": float(g.w_os[j]),
                   "importance_weight_likelihood_to_renew": float(g.w_ltr[j]),
                   "latent_mean_rating": float(g.tp_mean[j]),
                   "expected_quadrant": quad[code]}
            for j, code in enumerate(g.cat.codes)
        },
        "planted": {
            "fix_first": ["billing"],
            "possible_overkill": ["store_visit"],
            "worse_segment": {"segment": "smb", "rating_offset": float(SEGMENT_RATING_OFFSET[1])},
            "segment_rating_offsets": dict(zip(SEGMENTS, SEGMENT_RATING_OFFSET.tolist(),
                                               strict=True)),
            "mercenaries": {"covariate": "price_sensitive", "rating_bump":
                            PRICE_SENSITIVE_RATING_BUMP,
                            "likelihood_to_renew_drop": PRICE_SENSITIVE_LTR_DROP},
            "overall_satisfaction": f"round({OS_BASE} + sum_t w_t * (rating_t - mean_t) "
                                    f"+ N(0,{OS_NOISE})), clipped 1-10, over the items rated",
            "likelihood_to_renew": f"round({LTR_BASE} + sum_t w'_t * (rating_t - mean_t) "
                                   f"- {PRICE_SENSITIVE_LTR_DROP} * price_sensitive "
                                   f"+ N(0,{LTR_NOISE})), clipped 1-5",
            "item_rating": "round(mean_t + segment offset + general(N(0,0.3)) + 0.4 * "
                           "price_sensitive [+ 0.8 * billing_experience for billing] "
                           "[- 0.9 if the rated contact was unresolved] + N(0,0.7)), 1-5",
        },
        "survey": {"p_invite_after_interaction": P_INVITE_AFTER_INTERACTION,
                   "relationship_every_days": RELATIONSHIP_EVERY_DAYS,
                   "response_p_mean": RESPONSE_P_MEAN,
                   "response_p_segment_multiplier": dict(zip(SEGMENTS,
                                                             RESPONSE_P_SEGMENT.tolist(),
                                                             strict=True)),
                   "goes_silent_response_p_before_onset": SILENT_RESPONSE_P,
                   "p_comment": P_COMMENT},
        "warts": {"late_interactions": P_LATE, "late_days": [1, 2], "reexported": P_REEXPORT,
                  "attribute_updates_per_customer_year": UPDATE_RATE * 365},
        "faults": {"rate": g.faults.rate,
                   "manifest": "_faults/manifest.csv" if g.faults.rate > 0 else None},
        "files": {"customers": "_truth/customers.parquet"},
    }
    path = out / "truth.json"
    path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, cust_path


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def generate(
    out: Path,
    customers: int = 3000,
    days: int = 120,
    start: date = date(2026, 7, 1),
    seed: int = 7,
    fmt: str = "csv",
    faults: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    """Write ``days`` nightly CRM and survey extracts for a base of ``customers`` into ``out``.

    Layout: ``<out>/<source>/<entity>/<YYYY-MM-DD>/<entity>_<YYYYMMDD>.<csv|parquet>``, one
    file per entity and day (header-only when empty); day 1 carries the full customer and
    subscription base. ``_truth/`` holds the planted model; with ``faults > 0`` a share
    ``faults`` of the rows of each file is broken on purpose plus a few whole files, all
    listed in ``_faults/manifest.csv`` (and ``.json``). Same arguments -> same bytes.
    Files of the window are overwritten; nothing else in ``out`` is deleted, so write a
    shorter window into a fresh folder.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if not 0.0 <= faults < 1.0:
        raise ValueError("faults is a fraction of rows in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = _Generator(out, customers, days, start, seed, fmt, faults)
    summary = g.run(progress)
    summary.truth_path, summary.truth_customers_path = _write_truth(g)
    if faults > 0:
        summary.manifest_path = g.faults.write_manifest(out)
        summary.n_faults = len(g.faults.manifest)
    else:  # a manifest left by an earlier faulty run into ``out`` would now be a lie
        for name in ("manifest.csv", "manifest.json"):
            (out / "_faults" / name).unlink(missing_ok=True)
    return summary
