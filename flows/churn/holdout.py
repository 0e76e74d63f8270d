"""Held-out metrics of snapshot fits: concordance, integrated Brier, 90-day calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flows.churn.design import SurvivalData, _concordance
from flows.churn.model import ChurnModel

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
