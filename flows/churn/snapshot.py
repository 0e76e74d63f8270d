"""Snapshot mode: one row per customer (a CSV such as Telco), fitted with the same code."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.design import FALSE_WORDS, TRUE_WORDS, ModelFitError, SurvivalData, _concordance
from flows.churn.families import FitConfig, fit_survival
from flows.churn.km import km_median, km_table
from flows.churn.model import ChurnModel

# --- snapshots (one row per customer, e.g. a CSV) ------------------------------------

log = logging.getLogger(__name__)

LEAK_CONCORDANCE = 0.85


def single_column_concordance(values: pd.Series, duration: np.ndarray, event: np.ndarray
                              ) -> float | None:
    """How well one column alone orders the durations, either way round (0.5-1)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    ok = np.isfinite(v)
    # a duration in disguise is continuous: flags and codes (< 10 values) are not judged
    if ok.sum() < 20 or not event[ok].any() or len(np.unique(v[ok])) < 10:
        return None
    c = _concordance(duration[ok], -v[ok], event[ok])
    return max(c, 1 - c)


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
    if covariates is None:
        # A column that alone ranks the duration almost perfectly is the duration in
        # disguise (Telco's TotalCharges ~ tenure x monthly charge): it is excluded unless
        # named in --covariates, and the note (and a warning) names it.
        for c in list(numeric):
            c1 = single_column_concordance(df[c], dur.to_numpy(float), ev)
            if c1 is not None and c1 > LEAK_CONCORDANCE:
                numeric.remove(c)
                ignored[c] = (f"leaks the duration (single-column concordance {c1:.3f} > "
                              f"{LEAK_CONCORDANCE}); pass it in --covariates to use it")
                log.warning("snapshot column %r excluded: %s", c, ignored[c])
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
    # What the family's own coefficients mean: hazard ratios (PH) or time ratios (AFT)
    se = np.sqrt(np.diag(model.cov))
    co["effect_label"] = "hazard_ratio" if model.kind == "cox" else "time_ratio"
    co["effect_ratio"] = np.exp(model.coef)
    co["effect_lower"] = np.exp(model.coef - 1.959964 * se)
    co["effect_upper"] = np.exp(model.coef + 1.959964 * se)
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
