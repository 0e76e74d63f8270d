"""The landmark design: observation rows of int_churn_observations as survival data.

Each row is a customer active on an observation date, with features as they stood on
that date. Its target is the time to churn from that date: on the tenure clock the row
enters at its tenure then (delayed entry) and is followed until churn, the end of the
data (``until``) or ``follow_days`` later, whichever comes first. Stacking the rows of
every observation date (a landmark "super model") lets one Cox fit learn how today's
features predict the next months, which is the question the scores answer; features
never look past their own date, so follow-up length cannot leak into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.design import SurvivalData

# Columns of int_churn_observations that are bookkeeping or the target, never features.
NOT_FEATURES = {
    "observation_id", "customer_id", "observation_date", "data_start_date",
    "observed_window_days", "signup_date", "tenure_days", "churned_on", "features_as_of",
    "monthly_value", "n_invitations", "subscription_known_on",
}
FLAG_PREFIX = "flag_"
# Missing values are filled with the training mean (DesignSpec). Missing-data indicators
# were tried and lowered the demo's backtest concordance (0.638 -> 0.633): left out.
# Non-negative, long-tailed features enter as log1p: a customer with one answer a year
# ago and a one-day "usual interval" must not dominate a linear predictor.
LOG_FEATURES = {
    "interactions_per_90d", "unresolved_per_90d", "interactions_per_90d_history",
    "unresolved_per_90d_history", "repeat_contacts_per_90d", "avg_wait_minutes",
    "days_since_last_answer", "usual_answer_interval_days", "silence_vs_habit",
    "n_unanswered_since_last_answer", "missed_answers_vs_habit",
}


@dataclass
class Observations:
    """The observation table, typed once: dates as datetime64, features split by kind."""

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    flags: list[str]

    @property
    def dates(self) -> np.ndarray:
        return np.sort(self.frame["observation_date"].unique())

    def at(self, day: date | np.datetime64) -> pd.DataFrame:
        return self.frame[self.frame["observation_date"] == pd.Timestamp(day)]


def prepare(raw: pd.DataFrame, like: Observations | None = None) -> Observations:
    """Type the table and decide which columns are features (every non-bookkeeping one).

    Text columns are categorical, the rest numeric; monthly value enters as its log;
    ``flag_*`` columns are the early-warning flags, whose lift is measured, not fitted.
    ``like``: the training rows' kinds, so a chunk of rows to score gets the same
    columns typed the same way whatever its own values look like.
    """
    f = raw.reset_index(drop=True)
    for c in ("observation_date", "churned_on", "signup_date", "data_start_date"):
        if c in f:
            f[c] = pd.to_datetime(f[c], errors="coerce")
    f["customer_id"] = f["customer_id"].astype(str)
    if "monthly_value" in f:
        f["log_monthly_value"] = np.log1p(pd.to_numeric(f["monthly_value"], errors="coerce"))
    flags = [c for c in f.columns if c.startswith(FLAG_PREFIX)]
    numeric, categorical = [], []
    for c in f.columns:
        if c in NOT_FEATURES or c in flags:
            continue
        if like is not None and c in like.categorical:
            f[c] = f[c].astype("string").fillna("unknown")
            categorical.append(c)
            continue
        if like is not None and c in like.numeric and not pd.api.types.is_numeric_dtype(f[c]):
            f[c] = pd.to_numeric(f[c], errors="coerce")
        if f[c].dtype == object:
            # a numeric column read back with nulls (or only nulls) arrives as objects
            as_num = pd.to_numeric(f[c], errors="coerce")
            if as_num.notna().sum() == f[c].notna().sum():
                f[c] = as_num.astype(float)
        if pd.api.types.is_bool_dtype(f[c]):
            f[c] = f[c].astype(float)
            numeric.append(c)
        elif pd.api.types.is_numeric_dtype(f[c]):
            f[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
            if c in LOG_FEATURES:
                f[c] = np.log1p(f[c].clip(lower=0))
            numeric.append(c)
        else:
            f[c] = f[c].astype("string").fillna("unknown")
            categorical.append(c)
    for c in flags:
        f[c] = f[c].astype("boolean").fillna(False).astype(bool)
    return Observations(f, numeric, categorical, flags)


def survival_rows(obs: Observations, before: date, until: date, follow_days: int,
                  max_rows: int | None = None, seed: int = 17) -> SurvivalData:
    """Stacked training rows: observations dated before ``before``, followed to ``until``.

    Tenure clock with delayed entry: entry = tenure on the observation date, duration =
    tenure at churn or censoring (``until``, or ``follow_days`` after the observation).
    A churn after ``until`` is not known then and counts as censored. With
    ``max_rows``, whole customers are sampled (every row of a sampled customer), which
    keeps the estimate unbiased without weights.
    """
    f = obs.frame
    rows = f[f["observation_date"] < pd.Timestamp(before)]
    if max_rows is not None and len(rows) > max_rows:
        ids = rows["customer_id"].unique()
        keep_share = max_rows / len(rows)
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(ids, max(1, int(len(ids) * keep_share)), replace=False))
        rows = rows[rows["customer_id"].isin(chosen)]
    rows = rows.reset_index(drop=True)
    d = rows["observation_date"]
    end = np.minimum((d + pd.Timedelta(days=follow_days)).to_numpy(),
                     np.datetime64(pd.Timestamp(until)))
    churn = rows["churned_on"].to_numpy()
    has = ~pd.isna(churn)
    event = has & (churn <= end)
    stop = np.where(event, churn, end)
    follow = (pd.to_datetime(stop) - d).dt.days.to_numpy(float)
    entry = pd.to_numeric(rows["tenure_days"], errors="coerce").fillna(0).to_numpy(float)
    ok = follow > 0
    rows, entry, follow, event = rows[ok].reset_index(drop=True), entry[ok], follow[ok], event[ok]
    notes: dict[str, Any] = {"observations_before": str(before), "followed_until": str(until),
                             "follow_days": follow_days}
    return SurvivalData(rows, entry + follow, event, entry, obs.numeric, obs.categorical,
                        None, notes)


@dataclass
class Landmark:
    """The customers active on one observation date and what happened in the next days."""

    frame: pd.DataFrame
    tenure: np.ndarray
    days_to_churn: np.ndarray  # NaN: no churn within the follow-up
    follow_days: int

    def churned_within(self, h: int) -> np.ndarray:
        return np.nan_to_num(self.days_to_churn, nan=np.inf) <= h


def landmark(obs: Observations, day: date | np.datetime64, until: date) -> Landmark:
    """The observation rows of ``day`` with their outcome up to ``until``."""
    rows = obs.at(day).reset_index(drop=True)
    t0 = pd.Timestamp(day)
    follow = int((pd.Timestamp(until) - t0).days)
    churn = rows["churned_on"]
    dtc = (churn - t0).dt.days.to_numpy(float)
    dtc = np.where(~np.isnan(dtc) & (dtc <= follow), dtc, np.nan)
    tenure = pd.to_numeric(rows["tenure_days"], errors="coerce").fillna(0).to_numpy(float)
    return Landmark(rows, tenure, dtc, follow)
