"""Churn: a survival model of time to churn, fitted with lifelines, scored nightly.

Every customer counts: churned ones as events, active ones as censored at their
current tenure. Scores are conditional on the tenure already reached, so
``churn_prob_90`` reads "probability this customer leaves in the next 90 days".
The fitted model is pickled into ``ops.model_registry`` and reused until a
refit is due (schedule, force, or held-out concordance drifting down); a fit
that fails keeps the previous model and never writes scores of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg2.extras import Json, execute_values

from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

HORIZONS = (30, 90, 180)
RMST_HORIZON = 365  # expected remaining lifetime is restricted to a year ahead
NUMERIC = [
    "log_monthly_value", "n_interactions_90d", "n_unresolved_90d", "n_repeat_contacts_90d",
    "avg_wait_minutes_90d", "billing_rating", "support_rating", "installation_rating",
    "avg_csat", "last_nps", "satisfaction_slope", "n_responses",
]
FLAGS = ["is_detractor", "silent_after_answering"]
CATEGORICAL = ["plan", "segment", "region"]
PENALIZERS = (0.001, 0.01, 0.1)


class ModelFitError(Exception):
    """The data cannot support a fit (too few events, no variance, no convergence)."""


@dataclass
class ChurnModel:
    """A fitted model plus everything needed to turn a feature table into its design matrix."""

    kind: str  # cox | weibull_aft
    fitter: Any
    columns: list[str]
    fill: dict[str, float]
    means: dict[str, float]
    categories: dict[str, list[str]]
    version: str = ""
    trained_for: date | None = None  # the run date whose data it was fitted on
    metrics: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


def design_matrix(features: pd.DataFrame, model: ChurnModel | None = None) -> tuple[
        pd.DataFrame, dict[str, float], dict[str, list[str]]]:
    """Numeric design: log value, filled ratings, 0/1 flags, one-hot categories.

    Missing ratings (customers who never answered) take the training mean, so a
    silent customer is scored as average rather than dropped.
    """
    df = pd.DataFrame(index=features.index)
    f = features
    df["log_monthly_value"] = np.log1p(pd.to_numeric(f["monthly_value"], errors="coerce"))
    df["avg_wait_minutes_90d"] = pd.to_numeric(f["avg_wait_seconds_90d"], errors="coerce") / 60
    for c in NUMERIC:
        if c not in df:
            df[c] = pd.to_numeric(f[c], errors="coerce")
    for c in FLAGS:
        df[c] = f[c].astype("boolean").fillna(False).astype(float)
    fill = model.fill if model else {c: float(df[c].mean()) if df[c].notna().any() else 0.0
                                     for c in NUMERIC}
    for c in NUMERIC:
        df[c] = df[c].fillna(fill.get(c, 0.0))
    cats = model.categories if model else {
        c: sorted(str(v) for v in f[c].dropna().unique()) for c in CATEGORICAL}
    for c, levels in cats.items():
        for level in levels[1:]:  # first level is the reference
            df[f"{c}_{level}"] = (f[c].astype(str) == level).astype(float)
    return df, fill, cats


def _check_fittable(x: pd.DataFrame, events: pd.Series, min_events: int) -> list[str]:
    n_events = int(events.sum())
    if n_events < min_events:
        raise ModelFitError(f"only {n_events} churn events; need at least {min_events}")
    constant = [c for c in x.columns if x[c].std() == 0]
    return [c for c in x.columns if c not in constant]


def _split(n: int, seed: int = 17) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random(n) < 0.8
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def fit(features: pd.DataFrame, run_date: date, min_events: int = 30) -> ChurnModel:
    """Fit Cox (penalizer by held-out concordance) and a Weibull AFT; keep the better."""
    from lifelines import CoxPHFitter, WeibullAFTFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.utils import concordance_index

    x, fill, cats = design_matrix(features)
    duration = features["tenure_days"].astype(float).clip(lower=0.5)
    event = features["churned"].fillna(False).astype(bool).astype(int)
    cols = _check_fittable(x, event, min_events)
    frame = x[cols].assign(duration=duration.values, event=event.values)
    train, test = _split(len(frame))
    if event.iloc[test].sum() < 5:
        raise ModelFitError("too few events to hold out for validation")
    candidates: list[tuple[float, str, Any, dict[str, Any]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pen in PENALIZERS:
            try:
                cph = CoxPHFitter(penalizer=pen).fit(frame.iloc[train], "duration", "event")
            except (ConvergenceError, np.linalg.LinAlgError) as e:
                log.warning("cox penalizer=%s did not converge: %s", pen, e)
                continue
            risk = cph.predict_partial_hazard(frame.iloc[test][cols])
            c = concordance_index(frame.iloc[test]["duration"], -risk, frame.iloc[test]["event"])
            candidates.append((c, "cox", cph, {"penalizer": pen}))
        try:
            aft = WeibullAFTFitter(penalizer=0.01).fit(frame.iloc[train], "duration", "event")
            pred = aft.predict_median(frame.iloc[test][cols])
            c = concordance_index(frame.iloc[test]["duration"], pred, frame.iloc[test]["event"])
            candidates.append((c, "weibull_aft", aft, {"penalizer": 0.01}))
        except (ConvergenceError, np.linalg.LinAlgError) as e:
            log.warning("weibull AFT did not converge: %s", e)
    if not candidates:
        raise ModelFitError("no candidate model converged")
    candidates.sort(key=lambda t: -t[0])
    best_c, kind, _, params = candidates[0]
    # Refit the winner on all rows; held-out concordance is what we report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "cox":
                fitter = CoxPHFitter(penalizer=params["penalizer"]).fit(frame, "duration", "event")
            else:
                fitter = WeibullAFTFitter(penalizer=params["penalizer"]).fit(
                    frame, "duration", "event")
        except (ConvergenceError, np.linalg.LinAlgError) as e:
            raise ModelFitError(f"final {kind} fit did not converge: {e}") from None
    model = ChurnModel(kind=kind, fitter=fitter, columns=cols, fill=fill,
                       means={c: float(frame[c].mean()) for c in cols}, categories=cats)
    model.parameters = {**params, "candidates": [
        {"kind": k, "heldout_concordance": round(c, 4), **p} for c, k, _, p in candidates]}
    model.metrics = {"heldout_concordance": float(best_c), "n_rows": len(frame),
                     "n_events": int(event.sum())}
    digest = hashlib.sha256(
        json.dumps([kind, cols, params, run_date.isoformat(), len(frame)]).encode()
    ).hexdigest()[:8]
    model.trained_for = run_date
    model.version = f"{kind}-{run_date:%Y%m%d}-{digest}"
    return model


def coefficients(model: ChurnModel) -> pd.DataFrame:
    """Per feature: coefficient on log hazard (Cox) or log time (AFT), with its 95 % CI."""
    s = model.fitter.summary.reset_index()
    if model.kind == "weibull_aft":
        s = s[s["param"] == "lambda_"].rename(columns={"covariate": "feature"})
        s = s[s["feature"] != "Intercept"]
        # AFT coefficients act on time: negate to read as log hazard direction.
        return pd.DataFrame({"feature": s["feature"], "coef": -s["coef"],
                             "ci_lower": -s["coef upper 95%"], "ci_upper": -s["coef lower 95%"],
                             "p_value": s["p"]})
    s = s.rename(columns={"covariate": "feature"})
    return pd.DataFrame({"feature": s["feature"], "coef": s["coef"],
                         "ci_lower": s["coef lower 95%"], "ci_upper": s["coef upper 95%"],
                         "p_value": s["p"]})


def score(model: ChurnModel, features: pd.DataFrame) -> pd.DataFrame:
    """Conditional churn probabilities, expected remaining days and top drivers per customer."""
    active = features[~features["churned"].fillna(False).astype(bool)].copy()
    if active.empty:
        return pd.DataFrame()
    x, _, _ = design_matrix(active, model)
    x = x.reindex(columns=model.columns, fill_value=0.0)
    tenure = active["tenure_days"].astype(float).clip(lower=0.0).values
    grid = np.arange(0, RMST_HORIZON + 1, 5, dtype=float)
    out = pd.DataFrame({"customer_id": active["customer_id"].values,
                        "tenure_days": active["tenure_days"].astype(int).values})
    # S(t + h) / S(t): survival over the next h days given survival to tenure t.
    s_now = _survival_at(model, x, tenure)
    for h in HORIZONS:
        s_h = _survival_at(model, x, tenure + h) / np.clip(s_now, 1e-12, None)
        out[f"survival_{h}"] = np.clip(s_h, 0.0, 1.0)
        out[f"churn_prob_{h}"] = 1.0 - out[f"survival_{h}"]
    surv = np.stack([_survival_at(model, x, tenure + g) for g in grid], axis=1)
    cond = np.clip(surv / np.clip(s_now, 1e-12, None)[:, None], 0, 1)
    out["expected_remaining_days"] = np.trapezoid(cond, grid, axis=1)
    coefs = coefficients(model).set_index("feature")["coef"]
    contrib = (x[model.columns] - pd.Series(model.means)) * coefs.reindex(model.columns).values
    out["top_drivers"] = [
        [{"feature": k, "contribution": round(float(v), 4)}
         for k, v in row.sort_values(ascending=False).head(3).items() if v > 0]
        for _, row in contrib.iterrows()
    ]
    return out


def _survival_at(model: ChurnModel, x: pd.DataFrame, t: np.ndarray) -> np.ndarray:
    """S(t_i | x_i) for each row at its own time t_i."""
    f = model.fitter
    if model.kind == "cox":
        base = f.baseline_cumulative_hazard_
        h0 = np.interp(t, base.index.values.astype(float), base.iloc[:, 0].values,
                       left=0.0, right=float(base.iloc[-1, 0]))
        ph = f.predict_partial_hazard(x).values
        return np.exp(-h0 * ph)
    lam = np.exp(_aft_log_scale(model, x))
    rho = float(np.exp(f.params_.loc[("rho_", "Intercept")]))
    return np.exp(-((np.asarray(t) / lam) ** rho))


def _aft_log_scale(model: ChurnModel, x: pd.DataFrame) -> np.ndarray:
    p = model.fitter.params_.loc["lambda_"]
    val = np.full(len(x), float(p.get("Intercept", 0.0)))
    for c in model.columns:
        val = val + x[c].values * float(p.get(c, 0.0))
    return val


# --- warehouse IO -----------------------------------------------------------------

def read_features(wh: Warehouse) -> pd.DataFrame:
    return wh.read_frame("select * from intermediate.int_churn_features")


def latest_model(wh: Warehouse) -> tuple[ChurnModel, datetime] | None:
    with wh.transaction() as cur:
        cur.execute("select model_blob, trained_at from ops.model_registry where status = 'active' "
                    "and model_blob is not null order by trained_at desc limit 1")
        row = cur.fetchone()
    if row is None:
        return None
    return pickle.loads(bytes(row[0])), row[1]


def register(wh: Warehouse, model: ChurnModel, run_date: date, features: pd.DataFrame) -> None:
    blob = pickle.dumps(model)
    with wh.transaction() as cur:
        cur.execute(
            "insert into ops.model_registry (model_version, trained_at, run_date, model_kind, "
            "data_window_start, data_window_end, n_rows, n_events, features, parameters, "
            "heldout_concordance, status, model_blob) values (%s, now(), %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, 'active', %s) on conflict (model_version) do update set "
            "trained_at = excluded.trained_at, model_blob = excluded.model_blob",
            (model.version, run_date, model.kind,
             None, run_date, model.metrics["n_rows"], model.metrics["n_events"],
             Json(model.columns), Json(model.parameters), model.metrics["heldout_concordance"],
             blob),
        )
        cur.execute("update ops.model_registry set status = 'retired' where status = 'active' "
                    "and model_version <> %s", (model.version,))
        cur.execute("insert into ops.model_fit_attempts (run_date, outcome, reason) "
                    "values (%s, 'fitted', %s)", (run_date, model.version))
        cur.execute("create table if not exists marts.churn_hazard_ratios (model_version text, "
                    "feature text, coef float8, hazard_ratio float8, ci_lower float8, "
                    "ci_upper float8, p_value float8, primary key (model_version, feature))")
        cur.execute("truncate marts.churn_hazard_ratios")
        co = coefficients(model)
        execute_values(cur, "insert into marts.churn_hazard_ratios values %s", [
            (model.version, r.feature, float(r.coef), float(np.exp(r.coef)),
             float(np.exp(r.ci_lower)), float(np.exp(r.ci_upper)), float(r.p_value))
            for r in co.itertuples()])


def write_scores(wh: Warehouse, scores: pd.DataFrame, model: ChurnModel, run_date: date) -> int:
    """Replace the scores with this run's, in one transaction (a re-run gives the same table)."""
    now = datetime.now(UTC)
    with wh.transaction() as cur:
        cur.execute(
            "create table if not exists marts.churn_scores (customer_id text primary key, "
            "model_version text not null, scored_at timestamptz not null, run_date date not null, "
            "tenure_days int, survival_30 float8, survival_90 float8, survival_180 float8, "
            "churn_prob_30 float8, churn_prob_90 float8, churn_prob_180 float8, "
            "expected_remaining_days float8, top_drivers jsonb)")
        cur.execute("delete from marts.churn_scores")
        rows = [
            (r.customer_id, model.version, now, run_date, int(r.tenure_days),
             float(r.survival_30), float(r.survival_90), float(r.survival_180),
             float(r.churn_prob_30), float(r.churn_prob_90), float(r.churn_prob_180),
             float(r.expected_remaining_days), Json(r.top_drivers))
            for r in scores.itertuples()
        ]
        execute_values(cur, "insert into marts.churn_scores values %s", rows, page_size=5000)
    return len(rows)


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
    metrics: dict[str, float] = field(default_factory=dict)


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


def run_churn(wh: Warehouse, run_date: date, every_days: int = 7, force: bool = False,
              min_events: int = 30, min_concordance: float = 0.6) -> ChurnResult:
    """Fit if due, else reuse; score active customers; keep the last good model on failure."""
    features = read_features(wh)
    last = latest_model(wh)
    reason = refit_due(last, run_date, every_days, force)
    if reason is None and last is not None:
        from lifelines.utils import concordance_index

        m = last[0]
        x, _, _ = design_matrix(features, m)
        x = x.reindex(columns=m.columns, fill_value=0.0)
        risk = _survival_at(m, x, np.full(len(x), 90.0))
        c = concordance_index(features["tenure_days"], risk, features["churned"].astype(int))
        if c < min_concordance:
            reason = f"concordance on current data {c:.3f} < {min_concordance}"
    model = last[0] if last else None
    refitted = False
    note = ""
    if reason is not None:
        try:
            model = fit(features, run_date, min_events=min_events)
            register(wh, model, run_date, features)
            refitted = True
            note = f"refitted ({reason})"
        except ModelFitError as e:
            record_attempt(wh, run_date, "failed", str(e))
            note = f"refit failed ({e}); kept {model.version if model else 'no model'}"
            log.warning(note)
    if model is None:
        return ChurnResult(None, False, 0, note or "no model", {})
    scores = score(model, features)
    n = write_scores(wh, scores, model, run_date) if len(scores) else 0
    return ChurnResult(model.version, refitted, n, note or "scored with stored model",
                       model.metrics)
