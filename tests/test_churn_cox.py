"""The own Cox against lifelines' CoxPHFitter: delayed entry, strata and a penalizer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.churn.cox import _fit_cox


def _data(n: int, seed: int) -> pd.DataFrame:
    """Whole-day times with ties, left truncation and two strata of different baselines."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    stratum = rng.integers(0, 2, n)
    lp = x @ np.array([0.5, -0.3, 0.0])
    t = np.ceil(rng.weibull(1.3 + 0.4 * stratum, n) * 200 * np.exp(-lp / 1.3))
    entry = np.floor(rng.uniform(0, 60, n))
    keep = t > entry
    cens = np.ceil(rng.uniform(50, 400, n))
    e = (t <= cens)
    t = np.minimum(t, cens)
    keep &= t > entry
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "s": stratum, "t": t,
                         "e": e.astype(int), "entry": entry})[keep].reset_index(drop=True)


@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_own_cox_matches_lifelines_with_entry_strata_and_penalizer(penalizer):
    from lifelines import CoxPHFitter

    df = _data(3000, 5)
    cols = ["x0", "x1", "x2"]
    z = df[cols].to_numpy()
    # unit sample sd (ddof=1), as lifelines normalises before penalising: same objective
    z = (z - z.mean(axis=0)) / z.std(axis=0, ddof=1)
    std = pd.DataFrame(z, columns=cols).assign(t=df.t, e=df.e, entry=df.entry, s=df.s)
    ref = CoxPHFitter(penalizer=penalizer).fit(std, "t", "e", entry_col="entry", strata=["s"])
    own = _fit_cox(z, df.t.to_numpy(float), df.e.to_numpy(bool), df.entry.to_numpy(float),
                   df.s.to_numpy(), penalizer, cols)
    np.testing.assert_allclose(own.beta, ref.params_[cols].to_numpy(), atol=1e-6)
    # both report the penalised log partial likelihood (ridge penalizer * n / 2 * |beta|^2)
    assert own.loglik == pytest.approx(ref.log_likelihood_, abs=1e-6)
    assert abs(own.beta[0] - 0.5) < 0.15 or penalizer > 0  # the planted effect is found
