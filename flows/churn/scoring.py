"""Scores: conditional churn probabilities, expected remaining lifetime, drivers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.cox import _baseline_at
from flows.churn.design import HORIZONS, RMST_HORIZON, RMST_STEP
from flows.churn.model import ChurnModel

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


def _values_where_listed(frame: pd.DataFrame, names: list[str], top: np.ndarray,
                         convert: Any, missing: object) -> dict[str, np.ndarray]:
    """Each input's values as text, converted only on the rows that list it among their
    top drivers (``missing`` elsewhere, and for an input not in ``frame``): converting
    every value of every input took 40 s of scoring a million customers."""
    out = {}
    for i, name in enumerate(names):
        col = np.full(len(frame), missing, dtype=object)
        rows = np.flatnonzero((top == i).any(axis=1))
        if name in frame and len(rows):
            col[rows] = convert(frame[name].iloc[rows])
        out[name] = col
    return out


def driver_contributions(model: ChurnModel, x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per input: (x - mean) * log-hazard coefficient, one-hot levels and a feature's
    missing-data indicator summed into the input they describe."""
    hc = model.hazard_coefficients()["coef"].to_numpy()
    contrib = (x - model.means) * hc
    srcs = dict(model.spec.sources)
    for c in model.columns:
        base = c.removesuffix("_missing")
        if base != c and base in srcs:
            srcs[c] = base
    names = sorted({srcs[c] for c in model.columns})
    pos = {s: i for i, s in enumerate(names)}
    agg = np.zeros((len(x), len(names)))
    for j, c in enumerate(model.columns):
        agg[:, pos[srcs[c]]] += contrib[:, j]
    return names, agg


def drivers_long(model: ChurnModel, frame: pd.DataFrame, customer_ids: np.ndarray,
                 k: int = 3) -> pd.DataFrame:
    """The top ``k`` risk-raising inputs per customer as rows BI can chart.

    Columns: customer_id, driver_rank (1 = strongest), feature, value (as text) and
    contribution (to the log hazard relative to the average customer, > 0 only).
    """
    x = model.spec.transform(frame).reindex(columns=model.columns, fill_value=0.0).to_numpy(float)
    names, agg = driver_contributions(model, x)
    if not names:
        return pd.DataFrame(columns=["customer_id", "driver_rank", "feature", "value",
                                     "contribution"])
    kk = min(k, len(names))
    top = np.argsort(-agg, axis=1)[:, :kk]
    vals = np.take_along_axis(agg, top, axis=1)
    text = _values_where_listed(frame, names, top, lambda v: v.astype("string")
                                .to_numpy(dtype=object), None)
    parts = []
    for j in range(kk):
        keep = vals[:, j] > 0
        value = np.empty(len(x), dtype=object)
        for i, s in enumerate(names):
            rows = top[:, j] == i
            value[rows] = text[s][rows]
        parts.append(pd.DataFrame({
            "customer_id": customer_ids[keep], "driver_rank": j + 1,
            "feature": np.array(names, dtype=object)[top[keep, j]],
            "value": value[keep], "contribution": vals[keep, j]}))
    return pd.concat(parts, ignore_index=True)


def top_drivers(model: ChurnModel, frame: pd.DataFrame, x: np.ndarray, k: int = 3) -> np.ndarray:
    """The ``k`` inputs raising each customer's hazard most, as JSON text per row.

    Contribution = (x - mean) * log-hazard coefficient, summed over the one-hot
    columns of a categorical, so "plan" is one driver with the customer's plan as
    its value. Only positive contributions are listed (an input lowering the
    hazard is not a reason to worry). Built with array operations: a Python loop
    over a million customers would cost more than the whole fit.
    """
    names, agg = driver_contributions(model, x)
    if not names:
        return np.full(len(x), "[]", dtype=object)
    kk = min(k, len(names))
    top = np.argsort(-agg, axis=1)[:, :kk]
    vals = np.take_along_axis(agg, top, axis=1)
    enc = _values_where_listed(frame, names, top, lambda v: _json_values(v.to_numpy()),
                               "null")
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
