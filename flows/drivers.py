"""Drivers: how strongly each touchpoint rating moves the overall goal.

Survey items are correlated (a customer unhappy with billing is often unhappy
with support), so plain regression weights flip sign and correlations double
count. Johnson's relative weights (2000) split R² into non-negative shares that
sum to one, which is what the action-priority quadrant needs; a seeded
bootstrap gives each share a 95 % interval. Output goes to
``intermediate.py_driver_importance`` for dbt to read.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from psycopg2.extras import execute_values

from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

GOALS = ("overall_satisfaction", "likelihood_to_renew")
MIN_RESPONSES = 30
BOOTSTRAP = 100
BOOTSTRAP_MAX_ROWS = 20_000


def relative_weights(x: pd.DataFrame, y: pd.Series) -> tuple[np.ndarray, np.ndarray, float]:
    """Johnson's relative weights: (raw weights summing to R², standardised betas, R²).

    Uses pairwise-complete correlations (customers rate only the touchpoints
    they met) and clips negative eigenvalues so the matrix stays usable.
    """
    data = pd.concat([x, y.rename("_y")], axis=1)
    corr = data.corr(min_periods=5).fillna(0.0).values
    p = x.shape[1]
    rxx = corr[:p, :p].copy()
    np.fill_diagonal(rxx, 1.0)
    rxy = corr[:p, p]
    evals, evecs = np.linalg.eigh(rxx)
    evals = np.clip(evals, 1e-9, None)
    lam = evecs @ np.diag(np.sqrt(evals)) @ evecs.T  # corr(X, Z), Z the orthogonal twin of X
    beta_z = np.linalg.solve(lam, rxy)
    raw = (lam**2) @ (beta_z**2)
    r2 = float(raw.sum())
    std_beta = np.linalg.solve(evecs @ np.diag(evals) @ evecs.T, rxy)
    return raw, std_beta, r2


def importance_table(long: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """Importance per goal × segment × item from ``int_driver_inputs`` rows."""
    if long.empty:
        return pd.DataFrame()
    wide = long.pivot_table(index="response_id", columns="item_code", values="rating",
                            aggfunc="mean")
    meta = long.drop_duplicates("response_id").set_index("response_id")
    items = list(wide.columns)
    touch = long.drop_duplicates("item_code").set_index("item_code")["touchpoint_code"]
    rng = np.random.default_rng(seed)
    rows = []
    segments = ["all"] + sorted(meta["segment"].dropna().unique())
    for goal in GOALS:
        for seg in segments:
            ids = meta.index if seg == "all" else meta.index[meta["segment"] == seg]
            y = pd.to_numeric(meta.loc[ids, goal], errors="coerce")
            x = wide.loc[ids]
            keep = y.notna()
            x, y = x[keep], y[keep]
            if len(y) < MIN_RESPONSES:
                continue
            raw, std_beta, r2 = relative_weights(x, y)
            share = raw / r2 if r2 > 0 else np.zeros(len(items))
            boots = []
            n_boot_rows = min(len(y), BOOTSTRAP_MAX_ROWS)
            for _ in range(BOOTSTRAP):
                pick = rng.integers(0, len(y), n_boot_rows)
                b_raw, _, b_r2 = relative_weights(x.iloc[pick], y.iloc[pick])
                boots.append(b_raw / b_r2 if b_r2 > 0 else np.zeros(len(items)))
            lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
            for i, item in enumerate(items):
                rows.append({
                    "goal": goal, "segment": seg, "item_code": item,
                    "touchpoint_code": touch.get(item), "n": int(x[item].notna().sum()),
                    "importance": float(share[i]), "importance_low": float(lo[i]),
                    "importance_high": float(hi[i]), "std_beta": float(std_beta[i]),
                    "mean_rating": float(x[item].mean()), "r_squared": r2,
                    "method": "johnson_relative_weights",
                })
    return pd.DataFrame(rows)


def run_drivers(wh: Warehouse) -> int:
    """Read the driver inputs, compute importances, replace the output table atomically."""
    long = wh.read_frame("select response_id, segment, item_code, touchpoint_code, rating, "
                         "overall_satisfaction, likelihood_to_renew "
                         "from intermediate.int_driver_inputs")
    table = importance_table(long)
    with wh.transaction() as cur:
        cur.execute("delete from intermediate.py_driver_importance")
        if len(table):
            cols = list(table.columns)
            execute_values(cur, f"insert into intermediate.py_driver_importance ({', '.join(cols)}) "
                           "values %s", [tuple(r) for r in table.itertuples(index=False)])
    log.info("driver importance: %d rows", len(table))
    return len(table)
