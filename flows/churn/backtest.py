"""Out-of-time backtest: the one measure of a churn model's quality.

Fit on observations dated before T - 90 (followed no further than T - 90), score the
customers active at T - 90, and compare with what happened in (T - 90, T]. The same
rows are scored by two baselines: tenure alone (lifelines' Kaplan–Meier with delayed
entry, on the same training rows) and the previously active model. The figures, per
model: concordance of the 90-day risk with the time to churn, AUC of churn within
30/90/180 days (180 only when the follow-up is that long), the share of the 90-day
churners the top decile catches, and 90-day calibration by decile.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from flows.churn.design import HORIZONS, DesignSpec, ModelFitError, SurvivalData, _concordance
from flows.churn.families import _check_fittable, _cox_model
from flows.churn.model import ChurnModel
from flows.churn.observations import Landmark
from flows.churn.scoring import _conditional_cumhaz


def fit_landmark_cox(data: SurvivalData, penalizer: float, min_events: int,
                     start: ChurnModel | None = None) -> ChurnModel:
    """The own Cox on stacked observation rows (delayed entry on the tenure clock).

    Constant and entirely missing features are dropped (and recorded in the spec), so a
    feature the data does not carry costs only itself; too few events raise ModelFitError.
    ``start``: a model of the same columns whose coefficients start Newton's method (the
    next penalizer, the same design on more rows): fewer iterations, the same optimum.
    """
    # stacked rows repeat a churner once per observation: count customers, not rows
    churners = (data.frame.loc[data.event, "customer_id"].nunique()
                if "customer_id" in data.frame else int(data.event.sum()))
    if churners < min_events:
        raise ModelFitError(f"only {churners} churned customers in the training rows; need "
                            f"at least {min_events} churn events")
    spec = DesignSpec.learn(data.frame, data.numeric, data.categorical)
    if not spec.columns:
        raise ModelFitError("no usable feature: " + "; ".join(
            f"{c} ({why})" for c, why in spec.dropped.items()))
    dropped, _ = _check_fittable(spec.transform(data.frame), data.event, min_events)
    spec = spec.without(dropped)  # (the design checked is freed before the fit builds its own)
    rows = np.arange(len(data.duration))
    init = start.coef if start is not None and start.columns == spec.columns else None
    model = _cox_model(data, spec, rows, penalizer, [], init=init)
    model.parameters.update({"penalizer": penalizer, "fitted_rows": int(len(rows)),
                             "fitted_events": int(data.event.sum()),
                             "dropped_features": spec.dropped})
    return model


def raw_probabilities(model: ChurnModel, lm: Landmark) -> dict[int, np.ndarray]:
    """Model probabilities of churn within each horizon, given the tenure reached."""
    x = model.spec.transform(lm.frame).reindex(columns=model.columns, fill_value=0.0)
    x = x.to_numpy(float)
    strata = model.stratum_of(lm.frame)
    delta = _conditional_cumhaz(model, x, lm.tenure, strata, model.linear_predictor(x))
    return {h: 1.0 - np.exp(-delta(float(h))) for h in HORIZONS}


def km_probabilities(train: SurvivalData, lm: Landmark) -> dict[int, np.ndarray]:
    """Tenure-only baseline: 1 - S(t + h) / S(t) from a Kaplan–Meier fit with delayed entry."""
    from lifelines import KaplanMeierFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KaplanMeierFitter().fit(train.duration, train.event, entry=train.entry)
    uniq, inv = np.unique(lm.tenure, return_inverse=True)

    def surv(t: np.ndarray) -> np.ndarray:
        return np.asarray(km.survival_function_at_times(t).to_numpy(), float)

    s_now = np.maximum(surv(uniq), 1e-12)
    return {h: (1.0 - surv(uniq + h) / s_now)[inv] for h in HORIZONS}


def _auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return None
    r = rankdata(score)
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def deciles(p: np.ndarray, outcome: np.ndarray) -> list[dict[str, Any]]:
    """Mean predicted and realised rate per decile of ``p`` (1 = lowest risk)."""
    if len(p) < 20:
        return []
    rank = rankdata(p, method="ordinal") - 1
    q = np.minimum((rank * 10) // len(p), 9).astype(int)
    return [{"decile": d + 1, "n": int((q == d).sum()),
             "predicted": round(float(p[q == d].mean()), 4),
             "observed": round(float(outcome[q == d].mean()), 4)}
            for d in range(10) if (q == d).any()]


def measure(probs: dict[int, np.ndarray], lm: Landmark) -> dict[str, Any]:
    """Backtest figures of one set of probabilities on one landmark."""
    p90 = probs[90]
    follow = lm.follow_days
    within = lm.churned_within(min(90, follow))
    t = np.where(np.isnan(lm.days_to_churn), follow, lm.days_to_churn)
    ev = ~np.isnan(lm.days_to_churn)
    out: dict[str, Any] = {"n": int(len(p90)), "churned_within_90": int(within.sum())}
    out["concordance"] = _concordance(t, p90, ev) if ev.any() and (~ev).any() else None
    for h in HORIZONS:
        out[f"auc_{h}"] = _auc(probs[h], lm.churned_within(h)) if h <= follow else None
    top = p90 >= np.quantile(p90, 0.9) if len(p90) else np.zeros(0, bool)
    out["top_decile_capture"] = (float(within[top].sum() / within.sum()) if within.sum()
                                 else None)
    dec = deciles(p90, within)
    out["calibration_deciles_90"] = dec
    gaps = [abs(d["predicted"] - d["observed"]) for d in dec]
    out["calibration_max_gap_90"] = max(gaps) if gaps else None
    return out


@dataclass
class BacktestResult:
    """What the backtest found for a candidate and the baselines on the same rows."""

    landmark_date: str
    penalizer: float
    model: ChurnModel
    raw: dict[int, np.ndarray]
    outcomes: dict[int, np.ndarray]
    figures: dict[str, Any]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def concordance(self) -> float:
        c = self.figures.get("concordance")
        return -math.inf if c is None else float(c)


@dataclass
class LandmarkConfig:
    """Choices of the pipeline's landmark fit; the defaults are the pipeline's.

    ``backtest_days``: how far before the run date the backtest landmark lies (its
    follow-up); ``follow_days``: how long each observation is followed in training (the
    longest horizon); ``max_rows``: stacked rows above which whole customers are sampled.
    """

    penalizers: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 5e-2)
    penalizer: float | None = None
    backtest_days: int = 90
    follow_days: int = 180
    min_events: int = 30
    min_backtest_events: int = 10
    min_backtest_days: int = 30  # a shorter history backtests over a shorter follow-up
    promote_margin: float = 0.0  # backtest C must beat tenure-only by more than this
    min_warning_lift: float = 1.2  # flags whose lift (lower 90 % bound) is below: non-predictive
    max_rows: int | None = 400_000
    search_rows: int = 150_000  # the penalizer is chosen on at most this many rows
    seed: int = 17

    @classmethod
    def from_settings(cls, churn: Any) -> LandmarkConfig:
        """From cxloop.yml's ``churn:`` section (flows.config.ChurnSettings)."""
        return cls(backtest_days=churn.backtest_days, follow_days=churn.follow_days,
                   min_events=churn.min_events, min_warning_lift=churn.min_warning_lift)


def flag_lift(lm: Landmark, flags: list[str], horizon: int = 90,
              confidence: float = 0.9) -> list[dict[str, Any]]:
    """Precision, recall and lift of each flag as it stood on the landmark date.

    ``lift_lower`` is the lift at the lower end of a two-sided ``confidence`` Wilson
    interval of the precision: a flag raised for 80 customers whose point lift is 1.5 by
    chance must not drive tasks, so predictiveness is judged on this bound.
    """
    from scipy.stats import binomtest

    churned = lm.churned_within(min(horizon, lm.follow_days))
    base = float(churned.mean()) if len(churned) else 0.0
    out = []
    for f in flags:
        on = lm.frame[f].to_numpy(bool)
        n = int(on.sum())
        hits = int(churned[on].sum())
        prec = hits / n if n else None
        low = (binomtest(hits, n).proportion_ci(confidence, method="wilson").low if n
               else None)
        out.append({"flag": f, "n_flagged": n, "n_customers": int(len(on)),
                    "base_rate": base, "precision": prec,
                    "recall": float((churned & on).sum() / churned.sum()) if churned.sum()
                    else None,
                    "lift": prec / base if prec is not None and base > 0 else None,
                    "lift_lower": low / base if low is not None and base > 0 else None})
    return out


def run_backtest(obs: Any, now: Any, cfg: LandmarkConfig,
                 previous: ChurnModel | None) -> BacktestResult:
    """Choose the penalizer by the out-of-time backtest and score the baselines.

    Raises ModelFitError when the history has no landmark ``backtest_days`` before the
    run date, or too few churn events before or after it.
    """
    import pandas as pd

    from flows.churn.observations import landmark, survival_rows

    now = pd.Timestamp(now)
    dates = [pd.Timestamp(d) for d in obs.dates]
    # the landmark backtest_days back; with a shorter history, the earliest landmark that
    # still has observations before it (a shorter follow-up, at least min_backtest_days)
    trainable = [d for d in dates if d < now and any(x < d for x in dates)]
    earlier = [d for d in trainable if d <= now - pd.Timedelta(days=cfg.backtest_days)]
    shorter = [d for d in trainable if (now - d).days >= cfg.min_backtest_days]
    if earlier:
        bt = max(earlier)
    elif shorter:
        bt = min(shorter)
    else:
        raise ModelFitError(f"history too short for a backtest: no observation date at least "
                            f"{cfg.min_backtest_days} days before {now.date()} with observations "
                            f"before it (first {min(dates).date() if dates else 'none'})")
    train = survival_rows(obs, bt.date(), bt.date(), cfg.follow_days, cfg.max_rows, cfg.seed)
    if int(train.event.sum()) < cfg.min_events:
        raise ModelFitError(f"only {int(train.event.sum())} churn events before the backtest "
                            f"date {bt.date()}; need at least {cfg.min_events}")
    lm = landmark(obs, bt, now.date())
    outcomes = {h: lm.churned_within(h) for h in HORIZONS if h <= lm.follow_days}
    if int(outcomes.get(90, lm.churned_within(lm.follow_days)).sum()) < cfg.min_backtest_events:
        raise ModelFitError(f"only {int(lm.churned_within(lm.follow_days).sum())} churns after "
                            f"the backtest date {bt.date()}; need {cfg.min_backtest_events}")
    pens = [cfg.penalizer] if cfg.penalizer is not None else list(cfg.penalizers)
    # the search runs on a customer sample; the chosen penalizer is refitted on all rows
    search = (survival_rows(obs, bt.date(), bt.date(), cfg.follow_days, cfg.search_rows,
                            cfg.seed + 1) if len(train.duration) > cfg.search_rows else train)
    best: BacktestResult | None = None
    candidates: list[dict[str, Any]] = []
    errors: list[str] = []
    candidates_model: ChurnModel | None = None
    for pen in pens:
        try:
            m = fit_landmark_cox(search if len(pens) > 1 else train, pen, cfg.min_events,
                                 start=candidates_model)
        except ModelFitError as err:
            errors.append(f"penalizer {pen}: {err}")
            continue
        candidates_model = m
        raw = raw_probabilities(m, lm)
        fig = measure(raw, lm)
        candidates.append({"family": "cox", "penalizer": pen,
                           "backtest_concordance": fig["concordance"],
                           "fitted_rows": m.parameters["fitted_rows"]})
        res = BacktestResult(str(bt.date()), pen, m, raw, outcomes, fig)
        if best is None or res.concordance > best.concordance + 1e-4:
            best = res
    if best is None:
        raise ModelFitError("no candidate converged: " + "; ".join(errors)[:400])
    if len(pens) > 1 and search is not train:
        m = fit_landmark_cox(train, best.penalizer, cfg.min_events, start=best.model)
        raw = raw_probabilities(m, lm)
        best = BacktestResult(best.landmark_date, best.penalizer, m, raw, outcomes,
                              measure(raw, lm))
    best.candidates = candidates
    best.baselines["tenure_only_km"] = measure(km_probabilities(train, lm), lm)
    if previous is not None:
        try:
            # a previous model trained after the landmark has seen its outcomes: its
            # figure is then optimistic, and says so
            saw = previous.trained_for is not None and previous.trained_for > bt.date()
            best.baselines["previous_model"] = {
                "model_version": previous.version, "trained_for": str(previous.trained_for),
                "trained_on_the_outcome_period": saw,
                **measure(raw_probabilities(previous, lm), lm)}
        except Exception as err:  # an incompatible old model is only a missing baseline
            best.baselines["previous_model"] = {"model_version": previous.version,
                                                "error": str(err)[:200]}
    best.figures["flags"] = flag_lift(lm, obs.flags)
    best.figures["training_rows"] = int(len(train.duration))
    best.figures["training_events"] = int(train.event.sum())
    return best
