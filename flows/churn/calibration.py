"""Probabilities that mean what they say: isotonic recalibration fitted on the backtest.

The backtest scores the customers of an observation date with a model that never saw
what followed, then sees who churned within 30 and 90 days; an isotonic regression
(scipy's pool-adjacent-violators, ``scipy.optimize.isotonic_regression``) of that outcome
on the model's probability maps raw to realised rates while keeping the model's order.
A 90-day backtest cannot see 180 days ahead: a horizon without its own map keeps the
model's ratio of cumulative hazards to the longest calibrated one,
``1 - (1 - p90_cal) ** (H180 / H90)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression


@dataclass
class Isotonic:
    """A monotone step map stored as its block edges (x, y), applied by interpolation."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, p: np.ndarray, outcome: np.ndarray) -> Isotonic:
        """Pool-adjacent-violators, kept as one knot per block (its mean p, its rate).

        Interpolating between block centres instead of applying the steps keeps the
        model's order within a block: a step function would tie hundreds of customers
        and blur exactly the top of the ranking a retention team works from.
        """
        order = np.argsort(p, kind="stable")
        xs, ys = np.asarray(p, float)[order], np.asarray(outcome, float)[order]
        fitted = isotonic_regression(ys, increasing=True).x
        block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
        counts = np.bincount(block)
        cx = np.bincount(block, xs) / counts
        cy = np.bincount(block, fitted) / counts
        return cls([float(v) for v in cx], [float(v) for v in cy])

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, float)
        if not self.x:
            return p
        x, y = np.asarray(self.x), np.asarray(self.y)
        out = np.interp(p, x, y)
        # past the outer knots: proportional to p, so the order is kept at both ends
        lo, hi = p < x[0], p > x[-1]
        out[lo] = y[0] * p[lo] / x[0] if x[0] > 0 else y[0]
        if x[-1] < 1:
            out[hi] = y[-1] + (1 - y[-1]) * (p[hi] - x[-1]) / (1 - x[-1])
        return np.clip(out, 0.0, 1.0)

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y}


@dataclass
class Calibration:
    """Per-horizon isotonic maps (30 and 90 days) and how 180 days follows from 90."""

    maps: dict[int, Isotonic] = field(default_factory=dict)
    method: str = "isotonic (scipy.optimize.isotonic_regression) on the backtest"

    def apply(self, raw: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Calibrated probabilities per horizon, monotone across horizons per customer."""
        out: dict[int, np.ndarray] = {h: self.maps[h](p) for h, p in raw.items()
                                      if h in self.maps}
        anchor = max(out) if out else None
        for h, p in raw.items():
            if h in out:
                continue
            if anchor is None:
                out[h] = p
                continue
            # a horizon the backtest did not observe keeps the model's hazard ratio to the
            # longest calibrated one: 1 - (1 - p_anchor_cal) ** (H_h / H_anchor)
            h_a = -np.log(np.clip(1 - raw[anchor], 1e-12, 1))
            h_h = -np.log(np.clip(1 - p, 1e-12, 1))
            ratio = np.where(h_a > 0, h_h / np.maximum(h_a, 1e-12), h / anchor)
            out[h] = 1 - np.clip(1 - out[anchor], 0, 1) ** ratio
        hs = sorted(out)
        for a, b in zip(hs[:-1], hs[1:], strict=True):  # P(churn in 90) >= P(churn in 30)
            out[b] = np.maximum(out[b], out[a])
        return {h: np.clip(v, 0.0, 1.0) for h, v in out.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "maps": {str(h): m.as_dict() for h, m in self.maps.items()},
                "horizon_180": "1 - (1 - p90_calibrated) ** (H180 / H90) of the model"}

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Calibration:
        if not doc:
            return cls()
        return cls({int(h): Isotonic(list(m["x"]), list(m["y"]))
                    for h, m in (doc.get("maps") or {}).items()}, doc.get("method", ""))


def fit_calibration(raw: dict[int, np.ndarray], outcomes: dict[int, np.ndarray]) -> Calibration:
    """Isotonic maps for each horizon whose outcome the backtest observed."""
    return Calibration({h: Isotonic.fit(raw[h], outcomes[h]) for h in outcomes if h in raw})


def cross_fitted(raw: dict[int, np.ndarray], outcomes: dict[int, np.ndarray],
                 seed: int = 3) -> dict[int, np.ndarray]:
    """Calibrated probabilities where no row's own outcome fitted its map (two folds).

    Calibration measured on the rows it was fitted on is flattering; this is the honest
    figure the registry records.
    """
    n = len(next(iter(raw.values())))
    fold = np.random.default_rng(seed).random(n) < 0.5
    out = {h: np.empty(n) for h in outcomes}
    for part in (fold, ~fold):
        cal = fit_calibration({h: raw[h][~part] for h in raw}, {h: o[~part] for h, o in
                                                                outcomes.items()})
        applied = cal.apply({h: raw[h][part] for h in raw})
        for h in outcomes:
            out[h][part] = applied[h]
    return out
