"""Snapshot-mode fitting: Cox (penalizer by held-out concordance) vs Weibull and
log-logistic AFT (lifelines), proportional-hazards check and stratification.

Used for one-row-per-customer files (``cxloop model fit --snapshot``); the pipeline's own
model is the landmark Cox of ``backtest`` / ``stage``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.cox import _fit_cox
from flows.churn.design import AFT_KINDS, PENALIZERS, DesignSpec, ModelFitError, SurvivalData, _concordance
from flows.churn.holdout import evaluate
from flows.churn.model import ChurnModel, _strata_labels


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


def _risk_at(model: ChurnModel, x: np.ndarray, strata: np.ndarray | None, t_star: float
             ) -> np.ndarray:
    """A ranking score valid across strata and families: cumulative hazard at one time."""
    return model.cumulative_hazard(x, np.full(len(x), t_star), strata)


def _rows_of(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[rows]``, or the frame itself when ``rows`` is every row in order (the
    final refit): a copy of the whole training frame is a quarter of a gigabyte at 1M."""
    if len(rows) == len(frame) and (len(rows) == 0 or (
            rows[0] == 0 and bool((np.diff(rows) == 1).all()))):
        return frame
    return frame.iloc[rows]


def _cox_model(data: SurvivalData, spec: DesignSpec, rows: np.ndarray, penalizer: float,
               strata: list[str], init: np.ndarray | None = None) -> ChurnModel:
    frame = _rows_of(data.frame, rows)
    x = spec.transform(frame).to_numpy(dtype=float)
    if not x.flags.writeable:  # a view pandas protects (copy-on-write)
        x = x.copy()
    cols = spec.columns
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    # standardised in place: the design of 400k rows is the refit's largest array
    x -= means
    x /= scales
    z = x
    lab = _strata_labels(frame, strata)
    del frame
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
