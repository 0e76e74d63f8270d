"""Probabilities that mean what they say: isotonic recalibration fitted on the backtest.

The backtest scores the customers of an observation date with a model that never saw
what followed, then sees who churned within 30 and 90 days; an isotonic regression
(scipy's pool-adjacent-violators, ``scipy.optimize.isotonic_regression``) of that outcome
on the model's probability maps raw to realised rates while keeping the model's order.
A 90-day backtest cannot see 180 days ahead: the 180-day probability keeps the model's
ratio of cumulative hazards to 90 days, ``1 - (1 - p90_cal) ** (H180 / H90)``.
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
        order = np.argsort(p, kind="stable")
        xs, ys = np.asarray(p, float)[order], np.asarray(outcome, float)[order]
        fitted = isotonic_regression(ys, increasing=True).x
        # keep both ends of every constant block: a few dozen knots instead of every row
        change = np.flatnonzero(np.diff(fitted) != 0)
        keep = np.unique(np.concatenate([[0, len(xs) - 1], change, change + 1]))
        return cls([float(v) for v in xs[keep]], [float(v) for v in fitted[keep]])

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if not self.x:
            return np.asarray(p, float)
        return np.interp(np.asarray(p, float), self.x, self.y)

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y}


@dataclass
class Calibration:
    """Per-horizon isotonic maps (30 and 90 days) and how 180 days follows from 90."""

    maps: dict[int, Isotonic] = field(default_factory=dict)
    method: str = "isotonic (scipy.optimize.isotonic_regression) on the backtest"

    def apply(self, raw: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Calibrated probabilities per horizon, monotone across horizons per customer."""
        out: dict[int, np.ndarray] = {}
        for h, p in raw.items():
            if h in self.maps:
                out[h] = self.maps[h](p)
        if 180 in raw and 90 in out and 90 in raw:
            h90 = -np.log(np.clip(1 - raw[90], 1e-12, 1))
            h180 = -np.log(np.clip(1 - raw[180], 1e-12, 1))
            ratio = np.where(h90 > 0, h180 / np.maximum(h90, 1e-12), 2.0)
            out[180] = 1 - np.clip(1 - out[90], 0, 1) ** np.maximum(ratio, 1.0)
        for h, p in raw.items():
            out.setdefault(h, p)
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
