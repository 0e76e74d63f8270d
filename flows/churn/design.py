"""The design matrix (learned once, stored with the model) and one-row survival data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

HORIZONS = (30, 90, 180)
RMST_HORIZON = 365  # expected remaining lifetime is restricted to a year ahead
RMST_STEP = 7
CATEGORICAL = ["plan", "segment", "region"]
PENALIZERS = (0.0, 0.0005, 0.005, 0.05)
AFT_KINDS = ("weibull_aft", "loglogistic_aft")
TRUE_WORDS = {"yes", "y", "1", "true", "t", "churned", "1.0"}
FALSE_WORDS = {"no", "n", "0", "false", "f", "active", "0.0", ""}


class ModelFitError(Exception):
    """The data cannot support a fit (too few events, separation, no convergence)."""


# --- design matrix ------------------------------------------------------------------

@dataclass
class DesignSpec:
    """How a frame becomes the numeric design matrix, learned once on the training data.

    Stored with the model so that scoring months later builds exactly the same
    columns: numeric columns filled with the training mean (a customer who never
    answered a survey is scored as average, not dropped), categoricals one-hot
    against their most frequent level (the "typical customer" is the baseline, so
    hazard ratios read against it), rare levels folded into that reference so
    that a handful of rows cannot produce a separated, infinite coefficient.
    """

    numeric: list[str]
    fill: dict[str, float]
    categories: dict[str, list[str]]  # column -> levels with a column (reference excluded)
    reference: dict[str, str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not used

    @property
    def columns(self) -> list[str]:
        return self.numeric + [f"{c}_{lv}" for c, lvs in self.categories.items() for lv in lvs]

    @property
    def sources(self) -> dict[str, str]:
        """Design column -> the input column it comes from (drivers are reported per source)."""
        out = {c: c for c in self.numeric}
        out.update({f"{c}_{lv}": c for c, lvs in self.categories.items() for lv in lvs})
        return out

    @classmethod
    def learn(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str],
              min_level_rows: int | None = None) -> DesignSpec:
        n = len(frame)
        floor = min_level_rows if min_level_rows is not None else max(10, int(0.002 * n))
        fill: dict[str, float] = {}
        num: list[str] = []
        dropped: dict[str, str] = {}
        for c in numeric:
            v = pd.to_numeric(frame[c], errors="coerce")
            if v.notna().sum() == 0:
                dropped[c] = "all values missing"
                continue
            fill[c] = float(v.mean())
            num.append(c)
        cats: dict[str, list[str]] = {}
        ref: dict[str, str] = {}
        for c in categorical:
            counts = frame[c].astype("string").fillna("missing").value_counts()
            counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            ref[c] = str(counts.index[0])
            cats[c] = sorted(str(lv) for lv, k in counts.iloc[1:].items() if k >= floor)
        return cls(numeric=num, fill=fill, categories=cats, reference=ref, dropped=dropped)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, np.ndarray] = {}
        for c in self.numeric:
            v = pd.to_numeric(frame[c], errors="coerce") if c in frame else pd.Series(
                np.nan, index=frame.index)
            out[c] = v.fillna(self.fill[c]).to_numpy(dtype=float)
        for c, levels in self.categories.items():
            s = (frame[c].astype("string").fillna("missing") if c in frame
                 else pd.Series("missing", index=frame.index, dtype="string"))
            for lv in levels:
                out[f"{c}_{lv}"] = (s == lv).to_numpy(dtype=float)
        return pd.DataFrame(out, index=frame.index, columns=self.columns)

    def without(self, columns: dict[str, str]) -> DesignSpec:
        """A copy without some design columns (constant ones), noting why."""
        num = [c for c in self.numeric if c not in columns]
        cats = {c: [lv for lv in lvs if f"{c}_{lv}" not in columns]
                for c, lvs in self.categories.items()}
        return DesignSpec(num, {c: self.fill[c] for c in num}, cats, dict(self.reference),
                          {**self.dropped, **columns})


@dataclass
class SurvivalData:
    """One row per customer: raw covariates, time on the model's clock and the event.

    ``entry`` is the tenure at which the customer came under observation (left
    truncation); ``order`` orders customers by when they signed up, for the
    time-based holdout (None: a seeded random holdout).
    """

    frame: pd.DataFrame
    duration: np.ndarray
    event: np.ndarray
    entry: np.ndarray
    numeric: list[str]
    categorical: list[str]
    order: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = np.asarray(self.duration, dtype=float)
        e = np.asarray(self.event).astype(bool)
        entry = np.zeros(len(d)) if self.entry is None else np.asarray(self.entry, dtype=float)
        entry = np.clip(np.nan_to_num(entry), 0.0, None)
        # Whole-unit clocks: a churn on day 0 counts as half a day (a zero duration has no
        # risk set), and entry must precede the end of the observed spell.
        eps = 0.5 if np.allclose(d[np.isfinite(d)], np.round(d[np.isfinite(d)])) else 1e-6
        d = np.maximum(d, eps)
        entry = np.minimum(entry, d - eps / 2)
        entry = np.clip(entry, 0.0, None)
        self.duration, self.event, self.entry = d, e, entry

    def subset(self, idx: np.ndarray) -> SurvivalData:
        return SurvivalData(self.frame.iloc[idx].reset_index(drop=True), self.duration[idx],
                            self.event[idx], self.entry[idx], self.numeric, self.categorical,
                            None if self.order is None else self.order[idx], self.notes)


def _concordance(t: np.ndarray, risk: np.ndarray, e: np.ndarray) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(t, -risk, e))
