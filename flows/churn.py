"""Churn: a survival model of time to churn, selected on held-out data, scored nightly.

Every customer counts: churned ones as events, active ones as censored at their
current tenure. Customers already in the base when the extracts begin are
left-truncated (they are only observed from that day on), otherwise the
survivors of the old base would make long tenures look safer than they are.

The model is a Cox proportional-hazards fit (own Newton–Raphson with Efron ties,
so a million whole-day durations with delayed entry fit in seconds) with a
penalizer chosen by a time-based split, compared with Weibull and log-logistic
AFT models (lifelines) on the same held-out customers; the better by held-out
concordance is kept. Proportional hazards are checked with lifelines' scaled
Schoenfeld test; a violating categorical becomes a stratum, anything else is
recorded. Scores are conditional on the tenure already reached, so
``churn_prob_90`` reads "probability this customer leaves in the next 90 days".

The fitted model is pickled into ``ops.model_registry`` and reused until a refit
is due (schedule, force, or concordance on recent churners drifting down); a fit
that fails keeps the previous model, records why in ``ops.model_fit_attempts``
and never writes scores of its own. The same code fits a one-row-per-customer
snapshot file (``cxloop model fit --snapshot``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psycopg2.extras import Json, execute_values

from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

HORIZONS = (30, 90, 180)
RMST_HORIZON = 365  # expected remaining lifetime is restricted to a year ahead
RMST_STEP = 7
NUMERIC = [
    "log_monthly_value", "n_interactions_90d", "n_unresolved_90d", "n_repeat_contacts_90d",
    "avg_wait_minutes_90d", "billing_rating", "support_rating", "installation_rating",
    "avg_csat", "last_nps", "satisfaction_slope", "n_responses",
]
FLAGS = ["is_detractor", "silent_after_answering"]
CATEGORICAL = ["plan", "segment", "region"]
PENALIZERS = (0.0, 0.0005, 0.005, 0.05)
AFT_KINDS = ("weibull_aft", "loglogistic_aft")
TRUE_WORDS = {"yes", "y", "1", "true", "t", "churned", "1.0"}
FALSE_WORDS = {"no", "n", "0", "false", "f", "active", "0.0", ""}


class ModelFitError(Exception):
    """The data cannot support a fit (too few events, separation, no convergence)."""


# --- design matrix ------------------------------------------------------------------

@dataclass
class DesignSpec:
    """How a frame becomes the numeric design matrix, learned once on the training data.

    Stored with the model so that scoring months later builds exactly the same
    columns: numeric columns filled with the training mean (a customer who never
    answered a survey is scored as average, not dropped), categoricals one-hot
    against their most frequent level (the "typical customer" is the baseline, so
    hazard ratios read against it), rare levels folded into that reference so
    that a handful of rows cannot produce a separated, infinite coefficient.
    """

    numeric: list[str]
    fill: dict[str, float]
    categories: dict[str, list[str]]  # column -> levels with a column (reference excluded)
    reference: dict[str, str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not used

    @property
    def columns(self) -> list[str]:
        return self.numeric + [f"{c}_{lv}" for c, lvs in self.categories.items() for lv in lvs]

    @property
    def sources(self) -> dict[str, str]:
        """Design column -> the input column it comes from (drivers are reported per source)."""
        out = {c: c for c in self.numeric}
        out.update({f"{c}_{lv}": c for c, lvs in self.categories.items() for lv in lvs})
        return out

    @classmethod
    def learn(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str],
              min_level_rows: int | None = None) -> DesignSpec:
        n = len(frame)
        floor = min_level_rows if min_level_rows is not None else max(10, int(0.002 * n))
        fill: dict[str, float] = {}
        num: list[str] = []
        dropped: dict[str, str] = {}
        for c in numeric:
            v = pd.to_numeric(frame[c], errors="coerce")
            if v.notna().sum() == 0:
                dropped[c] = "all values missing"
                continue
            fill[c] = float(v.mean())
            num.append(c)
        cats: dict[str, list[str]] = {}
        ref: dict[str, str] = {}
        for c in categorical:
            counts = frame[c].astype("string").fillna("missing").value_counts()
            counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            ref[c] = str(counts.index[0])
            cats[c] = sorted(str(lv) for lv, k in counts.iloc[1:].items() if k >= floor)
        return cls(numeric=num, fill=fill, categories=cats, reference=ref, dropped=dropped)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, np.ndarray] = {}
        for c in self.numeric:
            v = pd.to_numeric(frame[c], errors="coerce") if c in frame else pd.Series(
                np.nan, index=frame.index)
            out[c] = v.fillna(self.fill[c]).to_numpy(dtype=float)
        for c, levels in self.categories.items():
            s = (frame[c].astype("string").fillna("missing") if c in frame
                 else pd.Series("missing", index=frame.index, dtype="string"))
            for lv in levels:
                out[f"{c}_{lv}"] = (s == lv).to_numpy(dtype=float)
        return pd.DataFrame(out, index=frame.index, columns=self.columns)

    def without(self, columns: dict[str, str]) -> DesignSpec:
        """A copy without some design columns (constant ones), noting why."""
        num = [c for c in self.numeric if c not in columns]
        cats = {c: [lv for lv in lvs if f"{c}_{lv}" not in columns]
                for c, lvs in self.categories.items()}
        return DesignSpec(num, {c: self.fill[c] for c in num}, cats, dict(self.reference),
                          {**self.dropped, **columns})


@dataclass
class SurvivalData:
    """One row per customer: raw covariates, time on the model's clock and the event.

    ``entry`` is the tenure at which the customer came under observation (left
    truncation); ``order`` orders customers by when they signed up, for the
    time-based holdout (None: a seeded random holdout).
    """

    frame: pd.DataFrame
    duration: np.ndarray
    event: np.ndarray
    entry: np.ndarray
    numeric: list[str]
    categorical: list[str]
    order: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = np.asarray(self.duration, dtype=float)
        e = np.asarray(self.event).astype(bool)
        entry = np.zeros(len(d)) if self.entry is None else np.asarray(self.entry, dtype=float)
        entry = np.clip(np.nan_to_num(entry), 0.0, None)
        # Whole-unit clocks: a churn on day 0 counts as half a day (a zero duration has no
        # risk set), and entry must precede the end of the observed spell.
        eps = 0.5 if np.allclose(d[np.isfinite(d)], np.round(d[np.isfinite(d)])) else 1e-6
        d = np.maximum(d, eps)
        entry = np.minimum(entry, d - eps / 2)
        entry = np.clip(entry, 0.0, None)
        self.duration, self.event, self.entry = d, e, entry

    def subset(self, idx: np.ndarray) -> SurvivalData:
        return SurvivalData(self.frame.iloc[idx].reset_index(drop=True), self.duration[idx],
                            self.event[idx], self.entry[idx], self.numeric, self.categorical,
                            None if self.order is None else self.order[idx], self.notes)


# --- Cox proportional hazards (Efron ties, delayed entry, strata, ridge) ------------

def _cox_pieces(z: np.ndarray, t: np.ndarray, e: np.ndarray, entry: np.ndarray,
                beta: np.ndarray, need_info: bool = True
                ) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Log partial likelihood, score and information of one stratum (Efron's tie method).

    Risk sets come from difference arrays over the distinct event times: a row is at
    risk at tau_k when entry < tau_k <= t, so one ``bincount`` at its first and one
    past its last event time, then a cumulative sum, gives every risk-set sum. The
    information's S2 term collapses to one weighted Gram matrix, so a fit is a few
    passes over the rows, not one per event time.
    """
    n, p = z.shape
    ev = np.flatnonzero(e)
    tau = np.unique(t[ev])
    k = len(tau)
    if k == 0:
        return 0.0, np.zeros(p), np.zeros((p, p)) if need_info else None, tau, np.zeros(0)
    start = np.searchsorted(tau, entry, side="right")
    end = np.searchsorted(tau, t, side="right")
    eta = z @ beta
    shift = float(eta.max())
    a = np.exp(eta - shift)

    def risk_sum(w: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(start, w, k + 1) - np.bincount(end, w, k + 1))[:k]

    s0 = risk_sum(a)
    s1 = np.stack([risk_sum(a * z[:, j]) for j in range(p)], axis=1) if p else np.zeros((k, 0))
    ke = end[ev] - 1  # event rows: their own time is tau[ke]
    order = np.argsort(ke, kind="stable")
    ev, ke = ev[order], ke[order]
    d = np.bincount(ke, minlength=k).astype(float)
    first = np.concatenate([[0], np.cumsum(d)[:-1]]).astype(int)
    rank = np.arange(len(ev)) - first[ke]
    frac = rank / d[ke]
    ae = a[ev]
    d0 = np.bincount(ke, ae, k)
    d1 = np.stack([np.bincount(ke, ae * z[ev, j], k) for j in range(p)], axis=1) if p else \
        np.zeros((k, 0))
    s0e = s0[ke] - frac * d0[ke]
    s0e = np.maximum(s0e, 1e-300)
    m = (s1[ke] - frac[:, None] * d1[ke]) / s0e[:, None]
    ll = float(eta[ev].sum() - (np.log(s0e) + shift).sum())
    grad = z[ev].sum(axis=0) - m.sum(axis=0)
    info = None
    if need_info:
        c = np.bincount(ke, 1.0 / s0e, k)
        cp = np.bincount(ke, frac / s0e, k)
        ccum = np.concatenate([[0.0], np.cumsum(c)])
        wa = a * (ccum[end] - ccum[start])
        info = (z * wa[:, None]).T @ z
        zev = z[ev]
        info -= (zev * (ae * cp[ke])[:, None]).T @ zev
        info -= m.T @ m
    # Breslow baseline increments at x = column means (z = 0), on the unshifted scale.
    dh = d / (s0 * math.exp(shift))
    return ll, grad, info, tau, dh


@dataclass
class CoxCore:
    """A fitted Cox model on standardised covariates plus per-stratum baselines."""

    beta: np.ndarray  # on standardised columns
    cov: np.ndarray  # covariance of beta (standardised)
    loglik: float
    iterations: int
    baselines: dict[str, tuple[np.ndarray, np.ndarray, float]]  # stratum -> (tau, H0, tail k)


def _fit_cox(z: np.ndarray, t: np.ndarray, e: np.ndarray, entry: np.ndarray,
             strata: np.ndarray | None, penalizer: float, names: list[str],
             init: np.ndarray | None = None, max_iter: int = 60) -> CoxCore:
    """Newton–Raphson with step halving; ridge ``penalizer * n / 2 * ||beta||^2`` as lifelines."""
    n, p = z.shape
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(strata == s) for s in pd.unique(strata)]
    labels = ["all"] if strata is None else [str(s) for s in pd.unique(strata)]

    def evaluate(beta: np.ndarray, need_info: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
        ll, g, h = 0.0, np.zeros(p), np.zeros((p, p))
        for idx in groups:
            a, b, c, _, _ = _cox_pieces(z[idx], t[idx], e[idx], entry[idx], beta, need_info)
            ll, g = ll + a, g + b
            if need_info:
                h = h + c
        pen = penalizer * n
        return ll - 0.5 * pen * float(beta @ beta), g - pen * beta, h + pen * np.eye(p)

    beta = np.zeros(p) if init is None else init.astype(float).copy()
    ll, g, h = evaluate(beta)
    iterations = 0
    for it in range(1, max_iter + 1):
        iterations = it
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            raise ModelFitError("Cox information matrix is singular (collinear features: "
                                f"{', '.join(names)})") from None
        scale = 1.0
        while True:
            cand = beta + scale * step
            ll_new, g_new, h_new = evaluate(cand)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-10 * (1 + abs(ll)):
                break
            scale /= 2
            if scale < 1e-6:
                raise ModelFitError("Cox fit did not converge (step halving failed)")
        delta = ll_new - ll
        beta, ll, g, h = cand, ll_new, g_new, h_new
        if np.abs(beta).max(initial=0) > 25:
            worst = names[int(np.argmax(np.abs(beta)))]
            raise ModelFitError(f"coefficient of {worst!r} diverges: perfect separation "
                                "(one level has no events, or all of them)")
        if abs(delta) < 1e-9 * (1 + abs(ll)) and np.abs(scale * step).max(initial=0) < 1e-6:
            break
    else:
        raise ModelFitError(f"Cox fit did not converge in {max_iter} iterations")
    try:
        cov = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        raise ModelFitError("Cox information matrix is singular at the optimum") from None
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
        raise ModelFitError("Cox standard errors are not finite (separation or collinearity)")
    baselines = {}
    for lab, idx in zip(labels, groups, strict=True):
        _, _, _, tau, dh = _cox_pieces(z[idx], t[idx], e[idx], entry[idx], beta, False)
        big_h = np.cumsum(dh)
        baselines[lab] = (tau, big_h, _tail_shape(tau, big_h))
    return CoxCore(beta, cov, ll, iterations, baselines)


def _tail_shape(tau: np.ndarray, big_h: np.ndarray) -> float:
    """Weibull shape of the baseline's last half, to extend it past the last event time.

    The oldest customers' horizons reach beyond any observed tenure; holding the
    cumulative hazard flat there would score them as certain to stay.
    """
    if len(tau) < 5:
        return 1.0
    sel = (tau >= tau[-1] / 2) & (big_h > 0)
    if sel.sum() < 3:
        return 1.0
    slope = np.polyfit(np.log(tau[sel]), np.log(big_h[sel]), 1)[0]
    return float(np.clip(slope, 0.3, 3.0))


def _baseline_at(base: tuple[np.ndarray, np.ndarray, float], t: np.ndarray) -> np.ndarray:
    tau, big_h, k = base
    t = np.asarray(t, dtype=float)
    if len(tau) == 0:
        return np.zeros_like(t)
    idx = np.searchsorted(tau, t, side="right") - 1
    out = np.where(idx >= 0, big_h[np.clip(idx, 0, None)], 0.0)
    past = t > tau[-1]
    if past.any():
        out = np.where(past, big_h[-1] * (np.maximum(t, tau[-1]) / tau[-1]) ** k, out)
    return out


# --- models -------------------------------------------------------------------------

@dataclass
class ChurnModel:
    """A fitted model plus everything needed to score a feature table with it later.

    Only numpy/pandas objects are kept (no lifelines fitter), so a pickled model
    survives library upgrades.
    """

    kind: str  # cox | weibull_aft | loglogistic_aft
    spec: DesignSpec
    columns: list[str]
    means: np.ndarray
    scales: np.ndarray
    coef: np.ndarray  # original scale; Cox: log hazard; AFT: log time (scale parameter)
    cov: np.ndarray  # covariance of coef (original scale)
    intercept: float = 0.0  # AFT: log scale intercept at x = means
    shape: float = 1.0  # AFT: rho (Weibull) or beta (log-logistic)
    baselines: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    strata: list[str] = field(default_factory=list)  # categorical columns used as strata
    version: str = ""
    trained_for: date | None = None  # the run date whose data it was fitted on
    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    ph_check: dict[str, Any] = field(default_factory=dict)

    def design(self, data: SurvivalData) -> np.ndarray:
        x = self.spec.transform(data.frame).reindex(columns=self.columns, fill_value=0.0)
        return x.to_numpy(dtype=float)

    def stratum_of(self, frame: pd.DataFrame) -> np.ndarray:
        return _strata_labels(frame, self.strata)

    def linear_predictor(self, x: np.ndarray) -> np.ndarray:
        return (x - self.means) @ self.coef

    def cumulative_hazard(self, x: np.ndarray, t: np.ndarray, strata: np.ndarray | None = None,
                          lp: np.ndarray | None = None) -> np.ndarray:
        """H(t_i | x_i) for each row at its own time (t broadcast against rows)."""
        lp = self.linear_predictor(x) if lp is None else lp
        t = np.asarray(t, dtype=float)
        if self.kind == "cox":
            if not self.strata:
                base = self.baselines["all"]
                h0 = _baseline_at(base, t)
                return h0 * np.exp(lp).reshape(lp.shape + (1,) * (h0.ndim - lp.ndim))
            out = np.zeros(np.broadcast_shapes(t.shape, lp.shape) if t.ndim <= 1 else t.shape)
            fallback = max(self.baselines, key=lambda s: len(self.baselines[s][0]))
            for s in np.unique(strata):
                rows = strata == s
                base = self.baselines.get(str(s), self.baselines[fallback])
                tt = t[rows] if t.shape[:1] == lp.shape else t
                out[rows] = _baseline_at(base, tt) * np.exp(lp[rows]).reshape(
                    (-1,) + (1,) * (np.ndim(tt) - 1))
            return out
        log_scale = (self.intercept + lp).reshape(lp.shape + (1,) * (t.ndim - 1 if t.ndim else 0))
        z = (np.maximum(t, 1e-12) / np.exp(log_scale)) ** self.shape
        return z if self.kind == "weibull_aft" else np.log1p(z)

    def survival(self, x: np.ndarray, t: np.ndarray, strata: np.ndarray | None = None,
                 lp: np.ndarray | None = None) -> np.ndarray:
        return np.exp(-self.cumulative_hazard(x, t, strata, lp))

    def hazard_coefficients(self) -> pd.DataFrame:
        """Per feature: effect on the log hazard with its 95 % CI and p value.

        AFT coefficients act on log time; Weibull's are turned into exact log hazard
        ratios (times -rho), log-logistic's into log odds of having churned (times -beta),
        so every model reads the same way round in the mart.
        """
        se = np.sqrt(np.diag(self.cov))
        mult = 1.0 if self.kind == "cox" else -self.shape
        coef = self.coef * mult
        half = 1.959964 * se * abs(mult)
        from scipy.stats import norm

        p = 2 * norm.sf(np.abs(self.coef / np.where(se > 0, se, np.nan)))
        return pd.DataFrame({"feature": self.columns, "coef": coef, "se": se * abs(mult),
                             "ci_lower": coef - half, "ci_upper": coef + half, "p_value": p})


def _strata_labels(frame: pd.DataFrame, strata: list[str]) -> np.ndarray | None:
    if not strata:
        return None
    parts = [frame[c].astype("string").fillna("missing").astype(str) for c in strata]
    lab = parts[0]
    for s in parts[1:]:
        lab = lab + "|" + s
    return lab.to_numpy(dtype=object)


@dataclass
class FitConfig:
    """Choices for one fit; the defaults are the pipeline's.

    ``penalizer=None`` searches ``penalizers`` on a sample (the ridge penalty scales
    with n, so a value chosen on 50k rows carries over to a million); ``model`` fixes
    the family instead of picking by held-out concordance; ``ph_action='record'``
    keeps a violating covariate in the model and only notes the violation.
    """

    model: str = "auto"  # auto | cox | weibull_aft | loglogistic_aft
    penalizer: float | None = None
    penalizers: tuple[float, ...] = PENALIZERS
    ph_action: str = "stratify"  # stratify | record
    ph_alpha: float = 0.01
    ph_rows: int = 20_000
    holdout_share: float = 0.2
    search_rows: int = 50_000
    family_rows: int = 10_000  # AFT fits (lifelines) are slow: families compared on fewer rows
    eval_rows: int = 30_000
    aft_rows: int = 100_000
    aft_margin: float = 0.002  # an AFT must beat Cox by this much held-out concordance
    min_events: int = 30
    min_holdout_events: int = 10
    max_strata: int = 12
    seed: int = 17
    refit_on_all: bool = True


def split_data(data: SurvivalData, cfg: FitConfig, horizon: float = 90.0
               ) -> tuple[SurvivalData, SurvivalData, str]:
    """Training and held-out data: a calendar-time split when signup dates are known.

    Training sees everything up to a cutoff day (spells censored there); the
    held-out data is every customer still a customer at the cutoff, followed
    from it (their tenure then is their entry), which is the question the model
    is used for: who of today's customers leaves first. The cutoff keeps about
    ``holdout_share`` of the churn events after it, moved earlier to leave
    ``horizon`` days of follow-up when the training side keeps enough events.
    Holding out the newest signups instead would leave short tenures unseen in
    training when the old base is left-truncated. Without dates: a seeded
    random split of customers.
    """
    n = len(data.duration)
    if data.order is None:
        n_hold = max(1, int(round(cfg.holdout_share * n)))
        rng = np.random.default_rng(cfg.seed)
        hold = np.zeros(n, dtype=bool)
        hold[rng.choice(n, n_hold, replace=False)] = True
        return (data.subset(np.flatnonzero(~hold)), data.subset(np.flatnonzero(hold)),
                f"random {cfg.holdout_share:.0%} of customers")
    start = np.asarray(data.order, dtype=float)
    cal_end = start + data.duration
    end = float(np.nanmax(cal_end))
    ev_cal = cal_end[data.event]
    cut = float(np.quantile(ev_cal, 1 - cfg.holdout_share))
    need = max(cfg.min_events, int(0.2 * data.event.sum()))
    if end - cut <= horizon and (ev_cal <= end - horizon - 1).sum() >= need:
        cut = end - horizon - 1  # a full horizon of follow-up, whole days included
    tr = np.flatnonzero(start + data.entry < cut)
    train = data.subset(tr)
    t_cap = cut - start[tr]
    train.event = train.event & (train.duration <= t_cap)
    train.duration = np.minimum(train.duration, t_cap)
    ho = np.flatnonzero(cal_end > cut)
    hold = data.subset(ho)
    hold.entry = np.maximum(hold.entry, np.clip(cut - start[ho], 0, None))
    hold.entry = np.minimum(hold.entry, hold.duration - 1e-6)
    return train, hold, f"time split: trained on spells up to day {cut - end:+.0f}, held out " \
                        f"the {len(ho)} customers still there then, followed {end - cut:.0f} days"


def _sample(idx: np.ndarray, k: int, seed: int) -> np.ndarray:
    if len(idx) <= k:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, k, replace=False))


def _check_fittable(x: pd.DataFrame, event: np.ndarray, min_events: int
                    ) -> tuple[dict[str, str], list[str]]:
    """Too few events stop the fit; constant and separated binary columns are dropped.

    A constant column carries no information (the model without it is the same
    model). A rare 0/1 flag whose customers never churned (or all churned) has an
    infinite maximum-likelihood coefficient; keeping it would fail the whole refit
    over one flag, so it is dropped and recorded too, and returns once the data
    holds events on both sides. Only when nothing usable is left does the fit fail.
    """
    n_events = int(event.sum())
    if n_events < min_events:
        raise ModelFitError(f"only {n_events} churn events; need at least {min_events}")
    if n_events == len(event):
        raise ModelFitError("every customer churned: nothing is censored, no baseline to compare")
    values = x.to_numpy()
    sd = values.std(axis=0)
    constant = {c: "no variance" for c, s in zip(x.columns, sd, strict=True) if not s > 0}
    separated = []
    for j, c in enumerate(x.columns):
        if c in constant:
            continue
        col = values[:, j]
        lv = np.unique(col[: 1000])
        if len(lv) <= 2 and len(np.unique(col)) == 2:
            hi = col == col.max()
            ev_hi = int(event[hi].sum())
            if ev_hi == 0 or ev_hi == n_events:
                separated.append(c)
    dropped = {**constant, **{c: "perfect separation: no churn events on one side"
                              for c in separated}}
    if len(dropped) == x.shape[1]:
        raise ModelFitError("no usable feature: " + "; ".join(f"{c} ({why})"
                                                            for c, why in dropped.items()))
    return dropped, separated


def _concordance(t: np.ndarray, risk: np.ndarray, e: np.ndarray) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(t, -risk, e))


def _risk_at(model: ChurnModel, x: np.ndarray, strata: np.ndarray | None, t_star: float
             ) -> np.ndarray:
    """A ranking score valid across strata and families: cumulative hazard at one time."""
    return model.cumulative_hazard(x, np.full(len(x), t_star), strata)


def _cox_model(data: SurvivalData, spec: DesignSpec, rows: np.ndarray, penalizer: float,
               strata: list[str], init: np.ndarray | None = None) -> ChurnModel:
    x = spec.transform(data.frame.iloc[rows]).to_numpy(dtype=float)
    cols = spec.columns
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    z = (x - means) / scales
    lab = _strata_labels(data.frame.iloc[rows], strata)
    core = _fit_cox(z, data.duration[rows], data.event[rows], data.entry[rows], lab, penalizer,
                    cols, init=None if init is None else init * scales)
    coef = core.beta / scales
    cov = core.cov / np.outer(scales, scales)
    m = ChurnModel("cox", spec, cols, means, scales, coef, cov, baselines=core.baselines,
                   strata=list(strata))
    m.parameters = {"penalizer": penalizer, "iterations": core.iterations,
                    "log_partial_likelihood": core.loglik}
    return m


def _aft_model(kind: str, data: SurvivalData, spec: DesignSpec, rows: np.ndarray,
               penalizer: float) -> ChurnModel:
    from lifelines import LogLogisticAFTFitter, WeibullAFTFitter
    from lifelines.exceptions import ConvergenceError

    x = spec.transform(data.frame.iloc[rows])
    cols = spec.columns
    means = x.to_numpy().mean(axis=0)
    df = (x - means).assign(_t=data.duration[rows], _e=data.event[rows].astype(int),
                            _entry=data.entry[rows])
    fitter_cls = WeibullAFTFitter if kind == "weibull_aft" else LogLogisticAFTFitter
    main, shape_name = ("lambda_", "rho_") if kind == "weibull_aft" else ("alpha_", "beta_")
    entry_col = "_entry" if (data.entry[rows] > 0).any() else None
    if entry_col is None:
        df = df.drop(columns="_entry")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = fitter_cls(penalizer=penalizer).fit(df, "_t", "_e", entry_col=entry_col)
    except (ConvergenceError, np.linalg.LinAlgError, ValueError) as err:
        raise ModelFitError(f"{kind} did not converge: {err}") from None
    params = f.params_
    coef = np.array([float(params.loc[(main, c)]) for c in cols])
    keys = [(main, c) for c in cols]
    cov = f.variance_matrix_.loc[keys, keys].to_numpy()
    m = ChurnModel(kind, spec, cols, means, np.ones(len(cols)), coef, cov,
                   intercept=float(params.loc[(main, "Intercept")]),
                   shape=float(np.exp(params.loc[(shape_name, "Intercept")])))
    m.parameters = {"penalizer": penalizer, "fitted_rows": int(len(rows))}
    return m


def _ph_check(data: SurvivalData, spec: DesignSpec, rows: np.ndarray, penalizer: float,
              cfg: FitConfig) -> dict[str, Any]:
    """lifelines' scaled Schoenfeld test (rank time) on a sample; the violators by column."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    # lifelines has no Schoenfeld residuals under delayed entry: test on the customers
    # observed from signup when they carry enough churns, else on all, ignoring entry.
    fresh = rows[data.entry[rows] <= 0]
    basis = "customers observed from signup"
    if data.event[fresh].sum() < max(30, cfg.min_events):
        fresh, basis = rows, "all customers, delayed entry ignored (approximate)"
    sample = _sample(fresh, cfg.ph_rows, cfg.seed + 3)
    x = spec.transform(data.frame.iloc[sample])
    df = x.assign(_t=data.duration[sample], _e=data.event[sample].astype(int))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHFitter(penalizer=max(penalizer, 1e-4)).fit(df, "_t", "_e")
            res = proportional_hazard_test(cph, df, time_transform="rank")
    except Exception as err:  # the check is advice; a failure to run it is recorded, not fatal
        return {"method": "scaled Schoenfeld residuals, rank(time)", "error": str(err)[:300],
                "violations": [], "action": "not checked", "basis": basis}
    summ = res.summary
    tests = {str(i): {"test_statistic": round(float(r["test_statistic"]), 4),
                      "p": float(r["p"])} for i, r in summ.iterrows()}
    viol = [c for c, r in tests.items() if r["p"] < cfg.ph_alpha]
    return {"method": "scaled Schoenfeld residuals, rank(time) (lifelines "
                      "proportional_hazard_test)", "rows": int(len(sample)),
            "threshold_p": cfg.ph_alpha, "tests": tests, "violations": viol, "basis": basis}


def fit_survival(data: SurvivalData, cfg: FitConfig | None = None,
                 run_date: date | None = None) -> ChurnModel:
    """Fit, select and validate a churn model on one row per customer.

    Steps: learn the design; check it can support a fit; split off recent data
    (``split_data``); choose the Cox penalizer and compare AFT families on a sample of
    the training rows scored on the held-out rows; check proportional hazards and
    stratify a violating categorical; fit the winner on all training rows for the
    held-out metrics (concordance, integrated Brier, 90-day calibration), then on
    every row for use. Raises ``ModelFitError`` when the data cannot support it.
    """
    cfg = cfg or FitConfig()
    spec = DesignSpec.learn(data.frame, data.numeric, data.categorical)
    x = spec.transform(data.frame)
    constant, _ = _check_fittable(x, data.event, cfg.min_events)
    spec = spec.without(constant)
    train_data, hold_data, split_note = split_data(data, cfg)
    if hold_data.event.sum() < cfg.min_holdout_events or train_data.event.sum() < cfg.min_events:
        raise ModelFitError(f"{int(hold_data.event.sum())} held-out and "
                            f"{int(train_data.event.sum())} training churn events; need "
                            f"{cfg.min_holdout_events} and {cfg.min_events}")
    train = np.arange(len(train_data.duration))
    search = _sample(train, cfg.search_rows, cfg.seed)
    ev_data = hold_data.subset(_sample(np.arange(len(hold_data.duration)), cfg.eval_rows,
                                       cfg.seed + 1))
    t_star = float(np.median(data.duration[data.event])) if data.event.any() else 30.0
    candidates: list[dict[str, Any]] = []
    errors: list[str] = []

    def heldout_c(m: ChurnModel) -> float:
        xe = m.design(ev_data)
        return _concordance(ev_data.duration, _risk_at(m, xe, m.stratum_of(ev_data.frame), t_star),
                            ev_data.event)

    pens = [cfg.penalizer] if cfg.penalizer is not None else list(cfg.penalizers)
    best: tuple[float, float] | None = None
    if cfg.model in ("auto", "cox"):
        prev = None
        for pen in pens:
            try:
                m = _cox_model(train_data, spec, search, pen, [], init=prev)
            except ModelFitError as err:
                errors.append(f"cox penalizer={pen}: {err}")
                continue
            prev = m.coef
            c = heldout_c(m)
            candidates.append({"kind": "cox", "penalizer": pen, "heldout_concordance": round(c, 5),
                               "fitted_rows": int(len(search))})
            if best is None or c > best[0] + 1e-4:
                best = (c, pen)
    pen = best[1] if best else (cfg.penalizer if cfg.penalizer is not None else 0.005)
    cox_c = best[0] if best else -1.0
    family = _sample(train, cfg.family_rows, cfg.seed + 5)
    if cfg.model == "auto" or cfg.model in AFT_KINDS:
        if cfg.model == "auto" and best is not None and len(family) < len(search):
            # Compare families on equal footing: Cox refitted on the AFTs' smaller sample.
            try:
                cox_c = heldout_c(_cox_model(train_data, spec, family, pen, []))
                candidates.append({"kind": "cox", "penalizer": pen,
                                   "heldout_concordance": round(cox_c, 5),
                                   "fitted_rows": int(len(family))})
            except ModelFitError as err:
                errors.append(f"cox on the family sample: {err}")
        for kind in AFT_KINDS if cfg.model == "auto" else (cfg.model,):
            try:
                m = _aft_model(kind, train_data, spec, family, max(pen, 1e-4))
                c = heldout_c(m)
                candidates.append({"kind": kind, "penalizer": max(pen, 1e-4),
                                   "heldout_concordance": round(c, 5),
                                   "fitted_rows": int(len(family))})
            except ModelFitError as err:
                errors.append(str(err))
    if not candidates:
        raise ModelFitError("no candidate model converged: " + "; ".join(errors)[:500])
    aft = [c for c in candidates if c["kind"] != "cox"]
    best_aft = max(aft, key=lambda c: c["heldout_concordance"]) if aft else None
    kind = "cox"
    if best_aft and (best is None or best_aft["heldout_concordance"] > cox_c + cfg.aft_margin):
        kind = best_aft["kind"]

    ph = _ph_check(data, spec, np.arange(len(data.duration)), pen, cfg)
    strata: list[str] = []
    viol_sources = sorted({spec.sources.get(v, v) for v in ph.get("violations", [])})
    if kind == "cox" and cfg.ph_action == "stratify":
        cat_viol = [s for s in viol_sources if s in spec.categories and spec.categories[s]]
        levels = 1
        for s in cat_viol:
            if levels * (len(spec.categories[s]) + 1) <= cfg.max_strata:
                strata.append(s)
                levels *= len(spec.categories[s]) + 1
    if strata:
        spec = DesignSpec(spec.numeric, spec.fill,
                          {c: lv for c, lv in spec.categories.items() if c not in strata},
                          spec.reference, {**spec.dropped, **{s: "used as stratum" for s in strata}})
    ph["action"] = ph.get("action") or (f"stratified on {', '.join(strata)}" if strata else
                    "recorded (violations kept as average effects over time)" if viol_sources
                    else "none needed")
    ph["strata"] = strata
    ph["violating_features"] = viol_sources

    def fit_kind(d: SurvivalData, init: np.ndarray | None = None) -> ChurnModel:
        rows = np.arange(len(d.duration))
        if kind == "cox":
            return _cox_model(d, spec, rows, pen, strata, init=init)
        return _aft_model(kind, d, spec, _sample(rows, cfg.aft_rows, cfg.seed + 2),
                          max(pen, 1e-4))

    trained = fit_kind(train_data)
    metrics = evaluate(trained, ev_data, t_star)
    final = fit_kind(data, init=trained.coef) if cfg.refit_on_all else trained
    insample = _sample(np.arange(len(data.duration)), 200_000, cfg.seed + 4)
    ins = data.subset(insample)
    metrics["train_concordance"] = _concordance(
        ins.duration, _risk_at(final, final.design(ins), final.stratum_of(ins.frame), t_star),
        ins.event)
    metrics.update({"n_rows": int(len(data.duration)), "n_events": int(data.event.sum()),
                    "n_train": int(len(train_data.duration)),
                    "n_holdout": int(len(hold_data.duration)),
                    "holdout_events": int(hold_data.event.sum())})
    final.metrics = metrics
    final.ph_check = ph
    final.parameters = {
        **final.parameters, "kind": kind, "penalizer": pen, "strata": strata,
        "candidates": candidates, "candidate_errors": errors, "selection": (
            f"highest held-out concordance; an AFT must beat Cox by {cfg.aft_margin}"),
        "holdout": split_note,
        "dropped_features": spec.dropped, "reference_levels": spec.reference,
        "risk_time_for_ranking": t_star, "calibration_deciles": metrics.pop("deciles", []),
        **data.notes,
    }
    digest = hashlib.sha256(json.dumps(
        [kind, final.columns, pen, strata, (run_date or date.today()).isoformat(),
         metrics["n_rows"], metrics["n_events"]], default=str).encode()).hexdigest()[:8]
    final.trained_for = run_date
    final.version = f"{kind}-{(run_date or date.today()):%Y%m%d}-{digest}"
    return final


# --- validation metrics -------------------------------------------------------------

def _km_at(u: np.ndarray, e: np.ndarray, at: float) -> float:
    """Kaplan–Meier survival at ``at`` (NaN if nobody is followed that long)."""
    if len(u) == 0 or u.max() < at:
        return float("nan")
    times, inv = np.unique(u, return_inverse=True)
    d = np.bincount(inv, e.astype(float))
    c = np.bincount(inv)
    n_at = c[::-1].cumsum()[::-1]
    s = np.cumprod(1 - d / n_at)
    idx = np.searchsorted(times, at, side="right") - 1
    return float(s[idx]) if idx >= 0 else 1.0


def evaluate(model: ChurnModel, data: SurvivalData, t_star: float | None = None,
             horizon: float = 90.0) -> dict[str, Any]:
    """Held-out concordance, integrated Brier score and 90-day calibration by risk decile.

    Brier and calibration use the scoring clock (time since the customer came under
    observation, predictions conditional on surviving to it), the same quantity the
    nightly scores state; censoring is handled by inverse probability weights.
    """
    x = model.design(data)
    strata = model.stratum_of(data.frame)
    lp = model.linear_predictor(x)
    t_star = t_star or float(np.median(data.duration))
    risk = model.cumulative_hazard(x, np.full(len(x), t_star), strata, lp)
    out: dict[str, Any] = {"heldout_concordance": _concordance(data.duration, risk, data.event)}
    u = data.duration - data.entry
    e = data.event
    h_entry = model.cumulative_hazard(x, data.entry, strata, lp)

    def cond_surv(at: float) -> np.ndarray:
        return np.exp(-(model.cumulative_hazard(x, data.entry + at, strata, lp) - h_entry))

    hi = float(min(np.quantile(u, 0.9), 365.0))
    lo = float(max(np.quantile(u, 0.05), 1.0))
    if hi > lo:
        grid = np.linspace(lo, hi, 20)
        times, inv = np.unique(u, return_inverse=True)
        dc = np.bincount(inv, (~e).astype(float))
        n_at = np.bincount(inv)[::-1].cumsum()[::-1]
        g_surv = np.cumprod(1 - dc / n_at)

        def g_at(v: np.ndarray) -> np.ndarray:  # G(v-), censoring survival just before v
            idx = np.searchsorted(times, v, side="left") - 1
            return np.clip(np.where(idx >= 0, g_surv[np.clip(idx, 0, None)], 1.0), 0.05, 1.0)

        g_u = g_at(u)
        bs = []
        for g in grid:
            s = cond_surv(g)
            died = (u <= g) & e
            alive = u > g
            bs.append(np.mean(np.where(died, s**2 / g_u, 0.0)
                              + np.where(alive, (1 - s) ** 2 / g_at(np.array([g]))[0] * 1.0, 0.0)))
        out["integrated_brier"] = float(np.trapezoid(bs, grid) / (grid[-1] - grid[0]))
    else:
        out["integrated_brier"] = None
    p = 1 - cond_surv(horizon)
    deciles = []
    if len(p) >= 100:
        cuts = np.quantile(p, np.linspace(0, 1, 11))
        q = np.clip(np.searchsorted(cuts, p, side="right") - 1, 0, 9)
        for d in range(10):
            rows = q == d
            if rows.sum() == 0:
                continue
            obs = 1 - _km_at(u[rows], e[rows], horizon)
            deciles.append({"decile": d + 1, "n": int(rows.sum()),
                            "predicted": round(float(p[rows].mean()), 4),
                            "observed": None if math.isnan(obs) else round(obs, 4)})
    diffs = [abs(d["predicted"] - d["observed"]) for d in deciles if d["observed"] is not None]
    out["calibration_90d"] = float(max(diffs)) if diffs else None
    out["deciles"] = deciles
    return out


# --- scoring ------------------------------------------------------------------------

def _conditional_cumhaz(model: ChurnModel, x: np.ndarray, tenure: np.ndarray,
                        strata: np.ndarray | None, lp: np.ndarray):
    """A function h -> H(tenure + h) - H(tenure) per row, fast for a million rows.

    For Cox the baseline depends on tenure alone, and whole-day tenures take a
    few thousand values: the baseline is looked up once per distinct tenure and
    gathered, instead of a binary search per customer and horizon.
    """
    if model.kind != "cox":
        h_now = model.cumulative_hazard(x, tenure, strata, lp)
        return lambda h: model.cumulative_hazard(x, tenure + h, strata, lp) - h_now
    risk = np.exp(lp)
    groups = [(np.arange(len(x)), model.baselines["all"])] if not model.strata else []
    if model.strata:
        fallback = max(model.baselines, key=lambda s: len(model.baselines[s][0]))
        for s in np.unique(strata):
            groups.append((np.flatnonzero(strata == s),
                           model.baselines.get(str(s), model.baselines[fallback])))
    prepared = []
    for rows, base in groups:
        uniq, inv = np.unique(tenure[rows], return_inverse=True)
        prepared.append((rows, base, uniq, inv, _baseline_at(base, uniq)))

    def delta(h: float) -> np.ndarray:
        out = np.empty(len(x))
        for rows, base, uniq, inv, h_now in prepared:
            out[rows] = (_baseline_at(base, uniq + h) - h_now)[inv] * risk[rows]
        return out

    return delta


def score_frame(model: ChurnModel, frame: pd.DataFrame, tenure: np.ndarray) -> pd.DataFrame:
    """Conditional churn probabilities, expected remaining days and top drivers per row.

    ``tenure`` is the current time on the model's clock. S(t + h) / S(t) is the chance
    to stay h more days given the customer is still here at t; the restricted mean
    of that curve over a year is the expected remaining lifetime (in days, capped
    at 365). Drivers are the per-input contributions to the log hazard relative to
    the average customer, categoricals summed over their levels.
    """
    tenure = np.clip(np.asarray(tenure, dtype=float), 0.0, None)
    x = model.spec.transform(frame).reindex(columns=model.columns, fill_value=0.0).to_numpy(float)
    strata = model.stratum_of(frame)
    lp = model.linear_predictor(x)
    delta = _conditional_cumhaz(model, x, tenure, strata, lp)
    out: dict[str, Any] = {}
    for h in HORIZONS:
        s = np.exp(-delta(float(h)))
        out[f"survival_{h}"] = np.clip(s, 0.0, 1.0)
        out[f"churn_prob_{h}"] = 1.0 - out[f"survival_{h}"]
    grid = np.arange(0, RMST_HORIZON + 1, RMST_STEP, dtype=float)
    rmst = np.zeros(len(x))
    prev = np.ones(len(x))
    for a, b in zip(grid[:-1], grid[1:], strict=True):  # trapezoid, one column at a time
        cur = np.exp(-delta(float(b)))
        rmst += (prev + cur) / 2 * (b - a)
        prev = cur
    out["expected_remaining_days"] = rmst
    out["top_drivers"] = top_drivers(model, frame, x)
    return pd.DataFrame(out, index=frame.index)


def _json_values(values: np.ndarray) -> np.ndarray:
    """Each value as JSON text (vectorised: numbers rounded, text quoted, missing null)."""
    v = pd.Series(values)
    if pd.api.types.is_bool_dtype(v):
        return np.where(v.to_numpy(), "true", "false").astype(object)
    num = pd.to_numeric(v, errors="coerce") if pd.api.types.is_numeric_dtype(v) else None
    if num is not None:
        txt = num.round(3).astype(str).to_numpy(dtype=object)
        return np.where(num.notna().to_numpy(), txt, "null")
    codes, uniq = pd.factorize(v.astype("string"), use_na_sentinel=True)
    enc = np.array([json.dumps(str(u), ensure_ascii=False) for u in uniq] + ["null"], dtype=object)
    return enc[codes]


def top_drivers(model: ChurnModel, frame: pd.DataFrame, x: np.ndarray, k: int = 3) -> np.ndarray:
    """The ``k`` inputs raising each customer's hazard most, as JSON text per row.

    Contribution = (x - mean) * log-hazard coefficient, summed over the one-hot
    columns of a categorical, so "plan" is one driver with the customer's plan as
    its value. Only positive contributions are listed (an input lowering the
    hazard is not a reason to worry). Built with array operations: a Python loop
    over a million customers would cost more than the whole fit.
    """
    hc = model.hazard_coefficients()["coef"].to_numpy()
    contrib = (x - model.means) * hc
    srcs = model.spec.sources
    names = sorted({srcs[c] for c in model.columns})
    if not names:
        return np.full(len(x), "[]", dtype=object)
    pos = {s: i for i, s in enumerate(names)}
    agg = np.zeros((len(x), len(names)))
    for j, c in enumerate(model.columns):
        agg[:, pos[srcs[c]]] += contrib[:, j]
    kk = min(k, len(names))
    top = np.argsort(-agg, axis=1)[:, :kk]
    vals = np.take_along_axis(agg, top, axis=1)
    enc = {s: _json_values(frame[s].to_numpy()) if s in frame else
           np.full(len(frame), "null", dtype=object) for s in names}
    result = pd.Series("", index=range(len(x)), dtype=object)
    for j in range(kk):
        value = np.empty(len(x), dtype=object)
        for i, s in enumerate(names):
            rows = top[:, j] == i
            value[rows] = enc[s][rows]
        name = np.array([json.dumps(s) for s in names], dtype=object)[top[:, j]]
        item = ('{"feature": ' + pd.Series(name) + ', "value": ' + pd.Series(value)
                + ', "contribution": ' + pd.Series(np.round(vals[:, j], 4)).astype(str) + "}")
        keep = vals[:, j] > 0
        sep = np.where(result.to_numpy() == "", "", ", ")
        result = pd.Series(np.where(keep, result + sep + item, result), dtype=object)
    return ("[" + result + "]").to_numpy(dtype=object)


# --- Kaplan–Meier curves --------------------------------------------------------------

def km_table(duration: np.ndarray, event: np.ndarray, entry: np.ndarray | None,
             groups: dict[str, pd.Series | np.ndarray], max_points: int = 250) -> pd.DataFrame:
    """Kaplan–Meier curves per group with exponential-Greenwood 95 % bands.

    Delayed entry is honoured (at risk at t: entered before t and not yet gone),
    so an old base observed only from the first extract does not flatten the curve.
    Long curves are thinned to ``max_points`` steps to keep the mart small.
    """
    duration = np.asarray(duration, dtype=float)
    event = np.asarray(event).astype(bool)
    entry = np.zeros_like(duration) if entry is None else np.asarray(entry, dtype=float)
    rows = []
    for gtype, labels in groups.items():
        lab = pd.Series(np.asarray(labels, dtype=object)).fillna("missing").astype(str).to_numpy()
        for g in sorted(set(lab)):
            sel = lab == g
            rows.append(_km_one(duration[sel], event[sel], entry[sel], gtype, g, max_points))
    if not rows:
        return pd.DataFrame(columns=["group_type", "group_value", "timeline_days", "survival",
                                     "ci_lower", "ci_upper", "at_risk"])
    return pd.concat(rows, ignore_index=True)


def _km_one(t: np.ndarray, e: np.ndarray, entry: np.ndarray, gtype: str, g: str,
            max_points: int) -> pd.DataFrame:
    tau = np.unique(np.concatenate([[0.0], t[e]]))
    at_risk = (np.searchsorted(np.sort(entry), tau, side="left")
               - np.searchsorted(np.sort(t), tau, side="left"))
    d = np.bincount(np.searchsorted(tau, t[e]), minlength=len(tau)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(at_risk > 0, d / np.maximum(at_risk, 1), 0.0)
        s = np.cumprod(1 - q)
        gw = np.cumsum(np.where((at_risk - d) > 0, d / (at_risk * np.maximum(at_risk - d, 1)), 0.0))
        logs = np.log(s)
        se = np.sqrt(gw) / np.abs(logs)
        cl = np.log(-logs)
        lower = np.exp(-np.exp(cl + 1.959964 * se))
        upper = np.exp(-np.exp(cl - 1.959964 * se))
    lower = np.where(np.isfinite(lower), lower, s)
    upper = np.where(np.isfinite(upper), upper, s)
    keep = np.arange(len(tau))
    if len(tau) > max_points:
        keep = np.unique(np.concatenate([np.linspace(0, len(tau) - 1, max_points).round()
                                         .astype(int), [len(tau) - 1]]))
    return pd.DataFrame({"group_type": gtype, "group_value": g, "timeline_days": tau[keep],
                         "survival": s[keep], "ci_lower": lower[keep], "ci_upper": upper[keep],
                         "at_risk": at_risk[keep].astype(int)})


def km_median(curve: pd.DataFrame) -> float | None:
    """Smallest time at which the curve reaches 0.5 (None if it never does)."""
    hit = curve[curve["survival"] <= 0.5]
    return None if hit.empty else float(hit["timeline_days"].iloc[0])


def plot_km(curves: pd.DataFrame, out_dir: Path, time_label: str = "tenure (days)"
            ) -> list[Path]:
    """One PNG per group type (``km_<group_type>.png``) with 95 % bands; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for gtype, part in curves.groupby("group_type", sort=True):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for g, c in part.groupby("group_value", sort=True):
            line = ax.step(c["timeline_days"], c["survival"], where="post", label=str(g))[0]
            ax.fill_between(c["timeline_days"], c["ci_lower"], c["ci_upper"], step="post",
                            alpha=0.15, color=line.get_color())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(time_label)
        ax.set_ylabel("share still a customer")
        ax.set_title(f"Kaplan–Meier by {gtype}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(gtype))
        p = out_dir / f"km_{safe}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


# --- snapshots (one row per customer, e.g. a CSV) ------------------------------------

def parse_event(values: pd.Series) -> np.ndarray:
    """Yes/No, 1/0, true/false (any case) -> bool; anything else is an error."""
    s = values.astype("string").str.strip().str.lower().fillna("")
    bad = sorted(set(s[~s.isin(TRUE_WORDS | FALSE_WORDS)].unique()))[:5]
    if bad:
        raise ValueError(f"event values not understood: {bad} (use Yes/No, 1/0 or true/false)")
    return s.isin(TRUE_WORDS).to_numpy()


def snapshot_data(df: pd.DataFrame, duration: str, event: str, cohort: str | None = None,
                  covariates: list[str] | None = None, exclude: list[str] | None = None,
                  entry: str | None = None, order: str | None = None) -> SurvivalData:
    """A snapshot frame as survival data: numeric columns as they are, the rest one-hot.

    A text column that is numbers apart from blanks (Telco's TotalCharges) counts as
    numeric; identifier-like text columns (one value per row, or hundreds of
    levels) are left out and noted.
    """
    for c in [duration, event] + [c for c in (entry, order) if c]:
        if c not in df:
            raise KeyError(f"column {c!r} not in the snapshot (columns: {', '.join(df.columns)})")
    if cohort:
        df = df.query(cohort, engine="python")
    df = df.reset_index(drop=True)
    dur = pd.to_numeric(df[duration], errors="coerce")
    ok = dur.notna() & (dur >= 0)
    df, dur = df[ok].reset_index(drop=True), dur[ok].reset_index(drop=True)
    notes: dict[str, Any] = {"rows_without_duration": int((~ok).sum())}
    ev = parse_event(df[event])
    skip = {duration, event, entry, order} | set(exclude or [])
    cols = covariates or [c for c in df.columns if c not in skip]
    numeric, categorical, ignored = [], [], {}
    for c in cols:
        if c not in df:
            raise KeyError(f"covariate {c!r} not in the snapshot")
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            df[c] = s.astype(float)
            numeric.append(c)
            continue
        if pd.api.types.is_numeric_dtype(s):
            numeric.append(c)
            continue
        as_num = pd.to_numeric(s.astype("string").str.strip().replace("", pd.NA), errors="coerce")
        nonblank = s.astype("string").str.strip().replace("", pd.NA).notna()
        if nonblank.sum() and as_num[nonblank].notna().mean() >= 0.95:
            df[c] = as_num
            numeric.append(c)
            continue
        k = s.nunique(dropna=True)
        if covariates is None and (k > 50 or k > 0.5 * len(df)):
            ignored[c] = f"identifier-like ({k} distinct values)"
            continue
        categorical.append(c)
    notes["ignored_columns"] = ignored
    ent = pd.to_numeric(df[entry], errors="coerce").fillna(0).to_numpy() if entry else None
    ordv = pd.to_numeric(df[order], errors="coerce").to_numpy() if order else None
    return SurvivalData(df, dur.to_numpy(dtype=float), ev, ent, numeric, categorical, ordv, notes)


@dataclass
class SnapshotReport:
    """What ``cxloop model fit --snapshot`` prints and writes."""

    n: int
    events: int
    km_median: float | None
    model: ChurnModel | None
    coefficients: pd.DataFrame
    km: pd.DataFrame
    error: str | None = None


def fit_snapshot(df: pd.DataFrame, duration: str, event: str, cohort: str | None = None,
                 covariates: list[str] | None = None, cfg: FitConfig | None = None,
                 exclude: list[str] | None = None, km_by: list[str] | None = None
                 ) -> SnapshotReport:
    """Fit and describe a one-row-per-customer snapshot with the pipeline's own code."""
    data = snapshot_data(df, duration, event, cohort, covariates, exclude)
    groups: dict[str, Any] = {"all": np.full(len(data.duration), "all")}
    for c in km_by or []:
        groups[c] = data.frame[c].to_numpy()
    km = km_table(data.duration, data.event, data.entry, groups)
    n, ev = len(data.duration), int(data.event.sum())
    med = km_median(km[km["group_type"] == "all"])
    try:
        model = fit_survival(data, cfg)
    except ModelFitError as err:
        return SnapshotReport(n, ev, med, None, pd.DataFrame(), km, str(err))
    co = model.hazard_coefficients()
    co["hazard_ratio"] = np.exp(co["coef"])
    co["hr_lower"], co["hr_upper"] = np.exp(co["ci_lower"]), np.exp(co["ci_upper"])
    return SnapshotReport(n, ev, med, model, co, km)


def synthetic_snapshot(n: int, seed: int = 1, window_days: int = 120) -> pd.DataFrame:
    """A one-row-per-customer frame drawn from the demo's planted hazard model.

    For benchmarks and tests at scales the extract generator is not meant for: the
    same covariates and Weibull PH churn times as ``flows.demo``, signups spread
    over three years, observation from a window start (left truncation) to
    ``window_days`` later, whole-day clocks. ``risk_score`` is the true exp(x.beta).
    """
    from flows import demo

    rng = np.random.default_rng(seed)
    m = int(n * 2.2) + 1000
    tr = demo._draw_traits(rng, m)
    signup = -rng.uniform(0, demo.BASE_HISTORY_DAYS + window_days, m) + window_days
    entry = np.maximum(-signup, 0.0)
    end = window_days - signup
    keep = np.flatnonzero(tr["t_churn"] > entry)[:n]
    ev = tr["t_churn"] < end
    dur = np.where(ev, tr["t_churn"], end)
    out = pd.DataFrame({k: tr[k][keep] for k in demo.COVARIATES})
    out["plan"] = np.array(["basic", "plus", "premium"])[tr["plan"][keep]]
    out["segment"] = np.array(["consumer", "smb", "enterprise"])[tr["segment"][keep]]
    out["region"] = rng.choice(["north", "south", "east", "west"], len(keep))
    out["duration"] = np.ceil(dur[keep])
    out["event"] = ev[keep].astype(int)
    out["entry"] = np.floor(entry[keep])
    out["signup_day"] = np.floor(signup[keep])
    out["risk_score"] = np.exp(tr["lp"][keep])
    return out.reset_index(drop=True)


# --- pipeline features -> survival data ---------------------------------------------

def pipeline_data(features: pd.DataFrame, window_start: date | None = None) -> SurvivalData:
    """int_churn_features as survival data, with the engineered covariates.

    Customers who signed up before the first extract were only observed from then
    on (entry = tenure at ``window_start``), unless the extracts carry churns from
    before it (then they hold the whole history and nothing is truncated).
    """
    f = features.reset_index(drop=True)
    df = pd.DataFrame(index=f.index)
    df["customer_id"] = f["customer_id"].astype(str)
    df["log_monthly_value"] = np.log1p(pd.to_numeric(f["monthly_value"], errors="coerce"))
    df["avg_wait_minutes_90d"] = pd.to_numeric(f["avg_wait_seconds_90d"], errors="coerce") / 60
    for c in NUMERIC:
        if c not in df:
            df[c] = pd.to_numeric(f[c], errors="coerce") if c in f else np.nan
    for c in FLAGS:
        df[c] = f[c].astype("boolean").fillna(False).astype(float) if c in f else 0.0
    for c in CATEGORICAL:
        df[c] = f[c].astype("string").fillna("unknown")
    for c in ("monthly_value", "churned_on"):
        if c in f:
            df[c] = f[c]
    tenure = pd.to_numeric(f["tenure_days"], errors="coerce").fillna(0).clip(lower=0).to_numpy(float)
    churned = f["churned"].astype("boolean").fillna(False).to_numpy(bool)
    cutoff = pd.to_datetime(f["cutoff_date"])
    signup = cutoff - pd.to_timedelta(tenure, unit="D")
    entry = np.zeros(len(f))
    notes: dict[str, Any] = {"window_start": window_start.isoformat() if window_start else None}
    if window_start is not None:
        ws = pd.Timestamp(window_start)
        history = bool((churned & (cutoff < ws - pd.Timedelta(days=1))).any())
        if history:
            notes["left_truncation"] = "none: extracts include churns before the first extract"
        else:
            entry = np.clip((ws - signup).dt.days.to_numpy(float), 0, None)
            notes["left_truncation"] = f"entry = tenure on {window_start} for the base then"
    else:
        notes["left_truncation"] = "none: first extract date unknown"
    order = (signup - pd.Timestamp("1970-01-01")).dt.days.to_numpy(float)
    return SurvivalData(df, tenure, churned, entry, NUMERIC + FLAGS, CATEGORICAL, order, notes)


def fit(features: pd.DataFrame, run_date: date, min_events: int = 30,
        window_start: date | None = None, cfg: FitConfig | None = None) -> ChurnModel:
    """Fit on int_churn_features (see ``fit_survival``)."""
    cfg = cfg or FitConfig()
    cfg.min_events = min_events
    return fit_survival(pipeline_data(features, window_start), cfg, run_date)


def coefficients(model: ChurnModel) -> pd.DataFrame:
    """Per feature: effect on the log hazard with its 95 % CI (see ``hazard_coefficients``)."""
    return model.hazard_coefficients()


def score(model: ChurnModel, features: pd.DataFrame) -> pd.DataFrame:
    """Scores for every active customer of int_churn_features."""
    data = pipeline_data(features)
    active = ~data.event
    if not active.any():
        return pd.DataFrame()
    frame = data.frame[active].reset_index(drop=True)
    tenure = data.duration[active]
    out = score_frame(model, frame, tenure)
    out.insert(0, "customer_id", frame["customer_id"].to_numpy())
    out.insert(1, "tenure_days", np.round(tenure).astype(int))
    return out


# --- warehouse IO -----------------------------------------------------------------

def read_features(wh: Warehouse) -> pd.DataFrame:
    return wh.read_frame("select * from intermediate.int_churn_features")


def data_window_start(wh: Warehouse) -> date | None:
    """The first extract date of subscriptions that was loaded: where observation begins."""
    with wh.transaction() as cur:
        cur.execute("select min(extract_date) from ops.load_batches where entity = 'subscriptions' "
                    "and status = 'loaded'")
        row = cur.fetchone()
    return row[0] if row else None


def latest_model(wh: Warehouse) -> tuple[ChurnModel, datetime] | None:
    with wh.transaction() as cur:
        cur.execute("select model_blob, trained_at from ops.model_registry where status = 'active' "
                    "and model_blob is not null order by trained_at desc limit 1")
        row = cur.fetchone()
    if row is None:
        return None
    try:
        model = pickle.loads(bytes(row[0]))
    except Exception as err:  # a model pickled by an older cxloop: refit rather than crash
        log.warning("stored churn model cannot be loaded (%s); a refit is due", err)
        return None
    if not isinstance(model, ChurnModel) or not hasattr(model, "spec"):
        return None
    return model, row[1]


def _json_safe(obj: Any) -> Any:
    """numpy scalars to Python, NaN/inf to null: jsonb accepts neither."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def register(wh: Warehouse, model: ChurnModel, run_date: date, features: pd.DataFrame | None = None,
             window_start: date | None = None) -> None:
    """Store the model as the active one and its hazard ratios, in one transaction."""
    blob = pickle.dumps(model)
    m = model.metrics
    with wh.transaction() as cur:
        cur.execute(
            "insert into ops.model_registry (model_version, trained_at, run_date, model_kind, "
            "data_window_start, data_window_end, n_rows, n_events, features, parameters, "
            "heldout_concordance, integrated_brier, calibration_90d, ph_check, status, model_blob) "
            "values (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'active', %s) "
            "on conflict (model_version) do update set trained_at = excluded.trained_at, "
            "model_blob = excluded.model_blob, status = 'active', parameters = excluded.parameters, "
            "ph_check = excluded.ph_check",
            (model.version, run_date, model.kind, window_start, run_date, m["n_rows"],
             m["n_events"], Json(model.columns), Json(_json_safe(
                 {**model.parameters, "metrics": m})),
             m.get("heldout_concordance"), m.get("integrated_brier"), m.get("calibration_90d"),
             Json(_json_safe(model.ph_check)), blob),
        )
        cur.execute("update ops.model_registry set status = 'retired' where status = 'active' "
                    "and model_version <> %s", (model.version,))
        cur.execute("insert into ops.model_fit_attempts (run_date, outcome, reason) "
                    "values (%s, 'fitted', %s)", (run_date, model.version))
        write_hazard_ratios(cur, model)


def write_hazard_ratios(cur: Any, model: ChurnModel) -> None:
    cur.execute("truncate marts.churn_hazard_ratios")
    co = model.hazard_coefficients()
    execute_values(cur, "insert into marts.churn_hazard_ratios values %s", [
        (model.version, r.feature, float(r.coef), float(np.exp(r.coef)),
         float(np.exp(r.ci_lower)), float(np.exp(r.ci_upper)),
         None if not np.isfinite(r.p_value) else float(r.p_value))
        for r in co.itertuples()])


def write_scores(wh: Warehouse, scores: pd.DataFrame, model: ChurnModel, run_date: date) -> int:
    """Replace the scores with this run's, in one transaction (a re-run gives the same table)."""
    now = datetime.now(UTC)
    with wh.transaction() as cur:
        cur.execute("delete from marts.churn_scores")
        rows = [
            (r.customer_id, model.version, now, run_date, int(r.tenure_days),
             float(r.survival_30), float(r.survival_90), float(r.survival_180),
             float(r.churn_prob_30), float(r.churn_prob_90), float(r.churn_prob_180),
             float(r.expected_remaining_days), _jsonb(r.top_drivers))
            for r in scores.itertuples()
        ]
        execute_values(cur, "insert into marts.churn_scores values %s", rows, page_size=5000,
                       template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)")
    return len(rows)



def _value_top_share() -> float:
    try:
        import yaml

        p = Path(__file__).resolve().parent.parent / "dbt_project" / "dbt_project.yml"
        return float(yaml.safe_load(p.read_text())["vars"]["value_top_share"])
    except Exception:
        return 0.25


def km_groups(wh: Warehouse | None, data: SurvivalData) -> dict[str, np.ndarray]:
    """Segment, value tier and Apostle group of every customer (churned ones included).

    mart_customer_360's value tier is built after this step and is null for churned
    customers, so the tier here is its value part only: the top ``value_top_share``
    by monthly value ('retain_at_all_costs') against everyone else ('other').
    """
    f = data.frame
    groups: dict[str, np.ndarray] = {"all": np.full(len(f), "all", dtype=object),
                                     "segment": f["segment"].astype(str).to_numpy()}
    if "monthly_value" in f:
        v = pd.to_numeric(f["monthly_value"], errors="coerce")
        cut = v.quantile(1 - _value_top_share())
        groups["value_tier"] = np.where(v >= cut, "retain_at_all_costs", "other").astype(object)
    if wh is not None:
        try:
            ap = wh.read_frame("select customer_id, apostle_group from marts.mart_apostle_segments")
            m = dict(zip(ap["customer_id"].astype(str), ap["apostle_group"], strict=True))
            groups["apostle_group"] = np.array(
                [m.get(c) or "no relationship survey" for c in f["customer_id"]], dtype=object)
        except Exception as err:  # the mart may not exist yet on a fresh warehouse
            log.info("no Apostle groups for Kaplan–Meier curves: %s", err)
    return groups


def write_km(wh: Warehouse, curves: pd.DataFrame, run_date: date) -> int:
    with wh.transaction() as cur:
        cur.execute("truncate marts.churn_km_curves")
        execute_values(cur, "insert into marts.churn_km_curves (run_date, group_type, group_value, "
                       "timeline_days, survival, ci_lower, ci_upper, at_risk) values %s",
                       [(run_date, r.group_type, r.group_value, float(r.timeline_days),
                         float(r.survival), float(r.ci_lower), float(r.ci_upper), int(r.at_risk))
                        for r in curves.itertuples()], page_size=5000)
    return len(curves)


def _jsonb(v: Any) -> Any:
    return v if isinstance(v, str) else Json(v)


def record_attempt(wh: Warehouse, run_date: date, outcome: str, reason: str) -> None:
    with wh.transaction() as cur:
        cur.execute("insert into ops.model_fit_attempts (run_date, outcome, reason) "
                    "values (%s, %s, %s)", (run_date, outcome, reason))


@dataclass
class ChurnResult:
    model_version: str | None
    refitted: bool
    scored: int
    note: str
    metrics: dict[str, Any] = field(default_factory=dict)
    km_plots: list[str] = field(default_factory=list)


def refit_due(last: tuple[ChurnModel, datetime] | None, run_date: date, every_days: int,
              force: bool) -> str | None:
    """Why a refit is due, or None to score with the stored model."""
    if force:
        return "forced"
    if last is None:
        return "no stored model"
    trained_for = last[0].trained_for
    if trained_for is None or (run_date - trained_for).days >= every_days or run_date < trained_for:
        return f"scheduled (model trained for {trained_for}, every {every_days} days)"
    return None


def recent_concordance(model: ChurnModel, data: SurvivalData, since: date | None,
                       min_events: int = 20) -> tuple[float | None, int]:
    """Concordance of a stored model on customers who churned after it was trained.

    Comparable pairs pair each recent churner with everyone who outlasted them, so
    this is "does the model still rank who leaves first" on data it never saw.
    """
    churned_on = pd.to_datetime(data.frame.get("churned_on"), errors="coerce") \
        if "churned_on" in data.frame else None
    if since is None or churned_on is None:
        return None, 0
    recent = data.event & (churned_on > pd.Timestamp(since)).to_numpy()
    n_recent = int(recent.sum())
    if n_recent < min_events:
        return None, n_recent
    keep = recent | ~data.event
    sub = data.subset(np.flatnonzero(keep))
    sub = sub.subset(_sample(np.arange(len(sub.duration)), 100_000, 5))
    x = model.design(sub)
    t_star = float(model.parameters.get("risk_time_for_ranking") or np.median(sub.duration))
    risk = _risk_at(model, x, model.stratum_of(sub.frame), t_star)
    return _concordance(sub.duration, risk, sub.event), n_recent


def run_churn(wh: Warehouse, run_date: date, every_days: int = 7, force: bool = False,
              min_events: int = 30, min_concordance: float = 0.6,
              reports_dir: Path | None = None, cfg: FitConfig | None = None) -> ChurnResult:
    """Fit if due, else reuse; score active customers; keep the last good model on failure.

    ``reports_dir`` (e.g. ``<CXLOOP_HOME>/reports/<run_id>``) receives the
    Kaplan–Meier PNGs; the curves themselves always go to marts.churn_km_curves.
    """
    features = read_features(wh)
    window_start = data_window_start(wh)
    data = pipeline_data(features, window_start)
    last = latest_model(wh)
    reason = refit_due(last, run_date, every_days, force)
    drift_note = ""
    if reason is None and last is not None:
        c, n_recent = recent_concordance(last[0], data, last[0].trained_for)
        if c is not None and c < min_concordance:
            reason = (f"concordance on {n_recent} churns since training {c:.3f} "
                      f"< {min_concordance}")
        elif c is not None:
            drift_note = f"; concordance on {n_recent} recent churns {c:.3f}"
    model = last[0] if last else None
    refitted = False
    note = ""
    if reason is not None:
        cfg = cfg or FitConfig()
        cfg.min_events = min_events
        try:
            model = fit_survival(data, cfg, run_date)
            register(wh, model, run_date, features, window_start)
            refitted = True
            note = f"refitted ({reason}): {model.kind}, held-out concordance " \
                   f"{model.metrics['heldout_concordance']:.3f}"
        except ModelFitError as e:
            record_attempt(wh, run_date, "failed", f"{reason}: {e}")
            note = (f"refit failed ({e}); kept {model.version if model else 'no model'}"
                    + ("" if model else ", nothing scored"))
            log.warning(note)
    plots: list[str] = []
    try:
        curves = km_table(data.duration, data.event, data.entry, km_groups(wh, data))
        write_km(wh, curves, run_date)
        if reports_dir is not None:
            plots = [str(p) for p in plot_km(curves, Path(reports_dir))]
    except Exception as err:  # curves are descriptive; never let them cost the scores
        log.warning("Kaplan–Meier curves not written: %s", err)
    if model is None:
        return ChurnResult(None, False, 0, note or "no model", {}, plots)
    scores = score(model, features)
    n = write_scores(wh, scores, model, run_date) if len(scores) else 0
    return ChurnResult(model.version, refitted, n,
                       (note or f"scored with stored model {model.version}") + drift_note,
                       model.metrics, plots)
