"""Relative weights recover known driver importances from correlated synthetic ratings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.drivers import importance_table, relative_weights


def _synthetic(n: int = 4000, seed: int = 3):
    rng = np.random.default_rng(seed)
    common = rng.normal(size=n)  # halo: ratings move together
    x = pd.DataFrame({f"i{k}": 0.6 * common + rng.normal(size=n) for k in range(4)})
    y = 1.0 * x["i0"] + 0.5 * x["i1"] + 0.1 * x["i2"] + 0.0 * x["i3"] + rng.normal(size=n)
    return x, y


def test_weights_sum_to_r_squared_and_rank_true_drivers():
    x, y = _synthetic()
    raw, beta, r2 = relative_weights(x, y)
    ols_r2 = 1 - np.var(y - np.linalg.lstsq(np.c_[np.ones(len(x)), x], y, rcond=None)[0] @
                        np.c_[np.ones(len(x)), x].T) / np.var(y)
    assert abs(raw.sum() - r2) < 1e-9
    assert abs(r2 - ols_r2) < 1e-3
    assert list(np.argsort(-raw)) == [0, 1, 2, 3]
    assert (raw >= 0).all()
    assert beta[0] > beta[1] > beta[2]


def test_importance_table_has_intervals_per_goal_and_segment():
    x, y = _synthetic(1200)
    rows = []
    for rid in range(len(x)):
        for k in range(4):
            rows.append({"response_id": rid, "segment": "smb" if rid % 2 else "consumer",
                         "item_code": f"i{k}", "touchpoint_code": f"t{k}",
                         "rating": x.iloc[rid, k], "overall_satisfaction": y.iloc[rid],
                         "likelihood_to_renew": y.iloc[rid]})
    t = importance_table(pd.DataFrame(rows))
    assert set(t["segment"]) == {"all", "smb", "consumer"}
    for _, g in t.groupby(["goal", "segment"]):
        assert abs(g["importance"].sum() - 1) < 1e-9
    top = t[(t.goal == "overall_satisfaction") & (t.segment == "all")].set_index("item_code")
    assert top.loc["i0", "importance_low"] > top.loc["i3", "importance_high"]
    assert (top["importance_low"] <= top["importance"]).all()
    assert (top["importance"] <= top["importance_high"]).all()
