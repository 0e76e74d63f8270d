"""Accounts of the utility profile: who they are, what they met, when they leave.

Everything about an account that does not depend on the day - tariff, class, the latent
traits the planted models read, the churn time drawn from the hazard model, survey
propensity, what the base met before the window - is drawn here, up front, once; the
daily loop in :mod:`flows.demo_profiles.utility` only draws the day's events.
"""

from __future__ import annotations

import numpy as np

from flows.demo import EMAIL_DOMAINS, EN_FIRST, EN_LAST
from flows.demo_profiles import utility_params as P
from flows.demo_profiles.utility_params import (
    ACQ_P,
    BASE_HISTORY_DAYS,
    BETAS,
    CANCEL_REASONS,
    CODES,
    COVARIATES,
    PLAN_P,
    PLAN_PRICE,
    REGION_P,
    SEGMENT_MULT,
    SEGMENT_P,
    WEIBULL_K,
    WEIBULL_LAM,
)

PROFILE_TAG = 2  # keeps this profile's random streams apart from the default demo's
PURPOSES = ("base", "movein", "attrs", "usage", "survey", "ratings", "orders", "updates")
TP = {c: j for j, c in enumerate(CODES)}


def stream(seed: int, purpose: str, day: int = -1) -> np.random.Generator:
    """A Generator per purpose and day: a change to one draw does not shift the others."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, PROFILE_TAG, PURPOSES.index(purpose), day + 1]))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Log-odds -> probability."""
    return 1.0 / (1.0 + np.exp(-x))


def draw_traits(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Covariates of ``n`` accounts and the churn time the hazard model gives them."""
    plan = rng.choice(len(PLAN_P), n, p=PLAN_P).astype(np.int8)
    segment = rng.choice(len(SEGMENT_P), n, p=SEGMENT_P).astype(np.int8)
    value = PLAN_PRICE[plan] * SEGMENT_MULT[segment] * np.exp(rng.normal(0, 0.3, n))
    x = {
        "plan_fixed_12m": (plan == 0).astype(float),
        "plan_prepay": (plan == 3).astype(float),
        "segment_small_business": (segment == 1).astype(float),
        "billing_error_prone": rng.normal(0, 1, n),
        "outage_exposure": rng.normal(0, 1, n),
        "payment_difficulty": (rng.random(n) < P.P_PAYMENT_DIFFICULTY).astype(float),
        "price_shopper": (rng.random(n) < P.P_PRICE_SHOPPER).astype(float),
    }
    lp = sum(BETAS[k] * x[k] for k in COVARIATES)
    t_churn = WEIBULL_LAM * (rng.exponential(1.0, n) / np.exp(lp)) ** (1.0 / WEIBULL_K)
    return {"plan": plan, "segment": segment, "value_cents": np.round(value * 100).astype(
        np.int64), "lp": lp, "t_churn": t_churn, **x}


class Population:
    """Per-account arrays (index i <-> account number A{i+1:07d}), drawn up front."""

    def __init__(self, seed: int, n_base: int, days: int) -> None:
        rng = stream(seed, "base")
        parts, have = [], 0
        while have < n_base:  # survivors to window start: left truncation stays honest
            m = max(1000, int((n_base - have) * 1.8))
            tr = draw_traits(rng, m)
            tr["signup_abs"] = -rng.uniform(1.0, BASE_HISTORY_DAYS, m)
            keep = np.flatnonzero(tr["t_churn"] > -tr["signup_abs"])[: n_base - have]
            parts.append({k: v[keep] for k, v in tr.items()})
            have += len(keep)
        base = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(base["signup_abs"], kind="stable")
        rng = stream(seed, "movein")
        self.per_day = rng.poisson(n_base * P.MOVE_INS_PER_CUSTOMER_DAY, days)
        new = draw_traits(rng, int(self.per_day.sum()))
        new["signup_abs"] = np.sort(np.repeat(np.arange(days), self.per_day)
                                    + rng.uniform(0.3, 0.9, len(new["plan"])))
        a = {k: np.concatenate([base[k][order], new[k]]) for k in base}
        self.n_base, self.n = n_base, len(a["plan"])
        self.a = a
        for k, v in a.items():
            setattr(self, k, v)
        self.plan0, self.value0_cents = a["plan"].copy(), a["value_cents"].copy()
        self.churn_abs = a["signup_abs"] + a["t_churn"]
        n, seg = self.n, a["segment"]

        rng = stream(seed, "attrs")
        self.region = rng.choice(len(REGION_P), n, p=REGION_P).astype(np.int8)
        self.acq = rng.choice(len(ACQ_P), n, p=ACQ_P).astype(np.int8)
        self.consent = rng.random(n) < P.P_CONSENT
        self.dwelling = np.where(seg == 1, np.where(rng.random(n) < 0.85, 2, 0),
                                 (rng.random(n) < 0.4).astype(int)).astype(np.int8)
        self.meter = np.where(a["plan"] == 3, 2, (rng.random(n) < 0.45).astype(int)).astype(
            np.int8)
        self.contact_intensity = rng.normal(0, 1, n)
        self.general = rng.normal(0, P.GENERAL_SD, n)
        self.resp_p = rng.beta(4.0, 4.0 * (1 - P.RESPONSE_P_MEAN) / P.RESPONSE_P_MEAN, n)
        self.bill_phase = rng.integers(0, P.BILL_EVERY_DAYS, n)
        self.read_phase = rng.integers(0, P.READING_EVERY_DAYS, n)
        self.pulse_phase = rng.integers(0, P.PULSE_EVERY_DAYS, n)
        # what the base met before the window (a pulse survey asks about these)
        old = -a["signup_abs"] > 30
        ex = np.zeros((n, len(CODES)), dtype=bool)
        ex[:, TP["move_in"]] = old & (-a["signup_abs"] < 730)
        ex[:, TP["billing"]] = old
        ex[:, TP["meter_reading"]] = old & (rng.random(n) < np.where(self.meter == 1, 1.0, 0.3))
        ex[:, TP["payment_plan"]] = old & (rng.random(n) < np.where(
            a["payment_difficulty"] > 0, 1.0, 0.05))
        ex[:, TP["outage_report"]] = old & (rng.random(n) < sigmoid(
            -0.3 + 0.8 * a["outage_exposure"]))
        ex[:, TP["field_visit"]] = old & (rng.random(n) < 0.25)
        ex[:, TP["online_account"]] = old & (rng.random(n) < 0.8)
        ex[:, TP["tariff_offers"]] = old & (rng.random(n) < sigmoid(
            0.3 + 0.8 * self.contact_intensity))
        self.experienced = ex
        self.base_updated = a["signup_abs"] + rng.random(n) * np.maximum(-a["signup_abs"], 0)
        self.first = rng.integers(0, len(EN_FIRST), n)
        self.last = rng.integers(0, len(EN_LAST), n)
        self.email_dom = rng.integers(0, len(EMAIL_DOMAINS), n)
        self.phone = rng.integers(0, 1000, n)  # 07700 900xxx: Ofcom's range for drama
        self.cancel_reason = self._cancel_reasons(rng)

    # set from the drawn traits in __init__ (one array per covariate and CRM attribute)
    plan: np.ndarray
    segment: np.ndarray
    value_cents: np.ndarray
    lp: np.ndarray
    t_churn: np.ndarray
    signup_abs: np.ndarray
    billing_error_prone: np.ndarray
    outage_exposure: np.ndarray
    payment_difficulty: np.ndarray
    price_shopper: np.ndarray

    def _cancel_reasons(self, rng: np.random.Generator) -> np.ndarray:
        """The reason follows the planted cause (price shoppers leave on price, ...)."""
        a = self.a
        w = np.empty((self.n, len(CANCEL_REASONS)))
        w[:, 0] = 0.2
        w[:, 1] = 0.1 * (1 + 1.5 * np.maximum(a["billing_error_prone"], 0))
        w[:, 2] = 0.1 * (1 + 1.5 * np.maximum(a["outage_exposure"], 0))
        w[:, 3] = 0.35
        w[:, 4] = 0.1
        w[a["price_shopper"] > 0, 0] = 1.5
        cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
        return (rng.random(self.n)[:, None] > cum).sum(1).clip(0, len(CANCEL_REASONS) - 1)

    def active(self, day: int) -> np.ndarray:
        """Accounts supplied for the whole of ``day``."""
        return np.flatnonzero((self.signup_abs < day) & (self.churn_abs > day + 1))
