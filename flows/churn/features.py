"""The legacy one-row-per-customer design on int_churn_features (tenure at the cutoff).

Kept for comparison only: its features run over the customer's whole follow-up, so their
length leaks into them (issue 13); the pipeline fits the landmark design instead.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.design import CATEGORICAL, FLAGS, NUMERIC, SurvivalData
from flows.churn.families import FitConfig, fit_survival
from flows.churn.model import ChurnModel
from flows.churn.scoring import score_frame

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
