"""The customer population: per-customer covariates, latent traits, signup and churn times.

Why this exists: everything about a customer that does not depend on the day is drawn up
front into per-customer arrays (a proportional-hazards Weibull churn time from the planted
coefficients, names, survey propensity, when a silent customer stops answering); the daily
loop then only draws the day's events. ``_draw_traits`` is shared with the churn snapshot.
"""

from __future__ import annotations

import numpy as np

from flows.demo.params import (
    ACQ_P,
    BASE_DRAW_CHUNK,
    BASE_HISTORY_DAYS,
    BETAS,
    CANCEL_REASONS,
    CHANNELS,
    COVARIATES,
    GENERAL_SD,
    LOG_VALUE_MEAN,
    LOG_VALUE_SD,
    NEW_SIGNUPS_PER_CUSTOMER_DAY,
    P_CONSENT,
    P_GOES_SILENT,
    P_PRICE_SENSITIVE,
    PLAN_P,
    PLAN_PRICE,
    REGION_P,
    RELATIONSHIP_EVERY_DAYS,
    RESPONSE_P_MEAN,
    RESPONSE_P_SEGMENT,
    SEGMENT_MULT,
    SEGMENT_P,
    SILENT_RESPONSE_P,
    TP_PARAMS,
    VALUE_SIGMA,
    WEIBULL_K,
    WEIBULL_LAM,
)
from flows.demo.streams import _rng
from flows.demo.vocab import (
    CN_GIVEN,
    CN_SURNAME,
    EMAIL_DOMAINS,
    EMAIL_SEPS,
    EN_FIRST,
    EN_LAST,
    P_CHINESE_NAME,
)


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
