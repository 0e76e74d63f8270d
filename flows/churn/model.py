"""A fitted survival model (Cox or AFT) and its JSON form, as stored in the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.cox import _baseline_at
from flows.churn.design import DesignSpec, SurvivalData

# --- models -------------------------------------------------------------------------

@dataclass
class ChurnModel:
    """A fitted model plus everything needed to score a feature table with it later.

    Only numbers and arrays are kept (no lifelines fitter), so the model is stored as
    JSON (``model_to_json``) and survives library upgrades.
    """

    kind: str  # cox | weibull_aft | loglogistic_aft
    spec: DesignSpec
    columns: list[str]
    means: np.ndarray
    scales: np.ndarray
    coef: np.ndarray  # original scale; Cox: log hazard; AFT: log time (scale parameter)
    cov: np.ndarray  # covariance of coef (original scale)
    intercept: float = 0.0  # AFT: log scale intercept at x = means
    shape: float = 1.0  # AFT: rho (Weibull) or beta (log-logistic)
    baselines: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    strata: list[str] = field(default_factory=list)  # categorical columns used as strata
    version: str = ""
    trained_for: date | None = None  # the run date whose data it was fitted on
    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    ph_check: dict[str, Any] = field(default_factory=dict)

    def design(self, data: SurvivalData) -> np.ndarray:
        x = self.spec.transform(data.frame).reindex(columns=self.columns, fill_value=0.0)
        return x.to_numpy(dtype=float)

    def stratum_of(self, frame: pd.DataFrame) -> np.ndarray:
        return _strata_labels(frame, self.strata)

    def linear_predictor(self, x: np.ndarray) -> np.ndarray:
        return (x - self.means) @ self.coef

    def cumulative_hazard(self, x: np.ndarray, t: np.ndarray, strata: np.ndarray | None = None,
                          lp: np.ndarray | None = None) -> np.ndarray:
        """H(t_i | x_i) for each row at its own time (t broadcast against rows)."""
        lp = self.linear_predictor(x) if lp is None else lp
        t = np.asarray(t, dtype=float)
        if self.kind == "cox":
            if not self.strata:
                base = self.baselines["all"]
                h0 = _baseline_at(base, t)
                return h0 * np.exp(lp).reshape(lp.shape + (1,) * (h0.ndim - lp.ndim))
            out = np.zeros(np.broadcast_shapes(t.shape, lp.shape) if t.ndim <= 1 else t.shape)
            fallback = max(self.baselines, key=lambda s: len(self.baselines[s][0]))
            for s in np.unique(strata):
                rows = strata == s
                base = self.baselines.get(str(s), self.baselines[fallback])
                tt = t[rows] if t.shape[:1] == lp.shape else t
                out[rows] = _baseline_at(base, tt) * np.exp(lp[rows]).reshape(
                    (-1,) + (1,) * (np.ndim(tt) - 1))
            return out
        log_scale = (self.intercept + lp).reshape(lp.shape + (1,) * (t.ndim - 1 if t.ndim else 0))
        z = (np.maximum(t, 1e-12) / np.exp(log_scale)) ** self.shape
        return z if self.kind == "weibull_aft" else np.log1p(z)

    def survival(self, x: np.ndarray, t: np.ndarray, strata: np.ndarray | None = None,
                 lp: np.ndarray | None = None) -> np.ndarray:
        return np.exp(-self.cumulative_hazard(x, t, strata, lp))

    def hazard_coefficients(self) -> pd.DataFrame:
        """Per feature: effect on the log hazard with its 95 % CI and p value.

        AFT coefficients act on log time; Weibull's are turned into exact log hazard
        ratios (times -rho), log-logistic's into log odds of having churned (times -beta),
        so every model reads the same way round in the mart.
        """
        se = np.sqrt(np.diag(self.cov))
        mult = 1.0 if self.kind == "cox" else -self.shape
        coef = self.coef * mult
        half = 1.959964 * se * abs(mult)
        from scipy.stats import norm

        p = 2 * norm.sf(np.abs(self.coef / np.where(se > 0, se, np.nan)))
        return pd.DataFrame({"feature": self.columns, "coef": coef, "se": se * abs(mult),
                             "ci_lower": coef - half, "ci_upper": coef + half, "p_value": p})


def _strata_labels(frame: pd.DataFrame, strata: list[str]) -> np.ndarray | None:
    if not strata:
        return None
    parts = [frame[c].astype("string").fillna("missing").astype(str) for c in strata]
    lab = parts[0]
    for s in parts[1:]:
        lab = lab + "|" + s
    return lab.to_numpy(dtype=object)


def model_to_json(model: ChurnModel) -> dict[str, Any]:
    """The model as plain JSON (lists for arrays): stored instead of a pickle.

    A pickle in the warehouse runs code when it is loaded; JSON only carries numbers,
    and stays readable across library versions.
    """
    from flows.churn.registry import _json_safe

    spec = model.spec
    return _json_safe({
        "format": "cxloop-churn-model/1", "kind": model.kind,
        "spec": {"numeric": spec.numeric, "fill": spec.fill, "categories": spec.categories,
                 "reference": spec.reference, "dropped": spec.dropped},
        "columns": model.columns, "means": model.means.tolist(), "scales": model.scales.tolist(),
        "coef": model.coef.tolist(), "cov": np.asarray(model.cov).tolist(),
        "intercept": model.intercept, "shape": model.shape,
        "baselines": {s: [tau.tolist(), h.tolist(), k] for s, (tau, h, k) in
                      model.baselines.items()},
        "strata": model.strata, "version": model.version,
        "trained_for": model.trained_for.isoformat() if model.trained_for else None,
        "metrics": model.metrics, "parameters": model.parameters, "ph_check": model.ph_check,
    })


def model_from_json(doc: dict[str, Any]) -> ChurnModel:
    """Inverse of ``model_to_json``; raises ValueError on anything else."""
    if not isinstance(doc, dict) or doc.get("format") != "cxloop-churn-model/1":
        raise ValueError("not a cxloop churn model document")
    s = doc["spec"]
    spec = DesignSpec(list(s["numeric"]), dict(s["fill"]), dict(s["categories"]),
                      dict(s["reference"]), dict(s.get("dropped") or {}))
    arr = np.asarray
    return ChurnModel(
        doc["kind"], spec, list(doc["columns"]), arr(doc["means"], float),
        arr(doc["scales"], float), arr(doc["coef"], float),
        arr(doc["cov"], float).reshape(len(doc["coef"]), len(doc["coef"])),
        float(doc.get("intercept") or 0.0), float(doc.get("shape") or 1.0),
        {st: (arr(b[0], float), arr(b[1], float), float(b[2]))
         for st, b in doc["baselines"].items()},
        list(doc.get("strata") or []), doc.get("version") or "",
        date.fromisoformat(doc["trained_for"]) if doc.get("trained_for") else None,
        doc.get("metrics") or {}, doc.get("parameters") or {}, doc.get("ph_check") or {})
