"""Kaplan–Meier curves with delayed entry (descriptive; marts.churn_km_curves, PNGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# --- Kaplan–Meier curves --------------------------------------------------------------

def km_table(duration: np.ndarray, event: np.ndarray, entry: np.ndarray | None,
             groups: dict[str, pd.Series | np.ndarray], max_points: int = 250) -> pd.DataFrame:
    """Kaplan–Meier curves per group with exponential-Greenwood 95 % bands.

    Delayed entry is honoured (at risk at t: entered before t and not yet gone),
    so an old base observed only from the first extract does not flatten the curve.
    Long curves are thinned to ``max_points`` steps to keep the mart small.
    """
    duration = np.asarray(duration, dtype=float)
    event = np.asarray(event).astype(bool)
    entry = np.zeros_like(duration) if entry is None else np.asarray(entry, dtype=float)
    rows = []
    for gtype, labels in groups.items():
        lab = pd.Series(np.asarray(labels, dtype=object)).fillna("missing").astype(str).to_numpy()
        for g in sorted(set(lab)):
            sel = lab == g
            rows.append(_km_one(duration[sel], event[sel], entry[sel], gtype, g, max_points))
    if not rows:
        return pd.DataFrame(columns=["group_type", "group_value", "timeline_days", "survival",
                                     "ci_lower", "ci_upper", "at_risk"])
    return pd.concat(rows, ignore_index=True)


def _km_one(t: np.ndarray, e: np.ndarray, entry: np.ndarray, gtype: str, g: str,
            max_points: int) -> pd.DataFrame:
    """One curve with lifelines' KaplanMeierFitter (delayed entry, exponential Greenwood)."""
    import warnings

    from lifelines import KaplanMeierFitter
    from lifelines.exceptions import StatError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km = KaplanMeierFitter().fit(t, e, entry=entry if np.any(entry > 0) else None)
    except (StatError, ValueError, ZeroDivisionError):
        return _km_one_own(t, e, entry, gtype, g, max_points)
    sf = km.survival_function_.iloc[:, 0]
    ci = km.confidence_interval_survival_function_
    tau = sf.index.to_numpy(float)
    # steps at event times only (and 0): censoring-only rows add points, not information
    events = km.event_table
    at = events["at_risk"].reindex(sf.index).to_numpy()
    observed = events["observed"].reindex(sf.index).to_numpy()
    step = (observed > 0) | (tau == tau.min())
    s, lower, upper = sf.to_numpy()[step], ci.iloc[:, 0].to_numpy()[step], ci.iloc[:, 1].to_numpy()[step]
    tau, at = tau[step], at[step]
    lower = np.where(np.isfinite(lower), lower, s)
    upper = np.where(np.isfinite(upper), upper, s)
    keep = np.arange(len(tau))
    if len(tau) > max_points:
        keep = np.unique(np.concatenate([np.linspace(0, len(tau) - 1, max_points).round()
                                         .astype(int), [len(tau) - 1]]))
    return pd.DataFrame({"group_type": gtype, "group_value": g, "timeline_days": tau[keep],
                         "survival": s[keep], "ci_lower": lower[keep], "ci_upper": upper[keep],
                         "at_risk": at[keep].astype(int)})


MIN_AT_RISK = 5


def _km_one_own(t: np.ndarray, e: np.ndarray, entry: np.ndarray, gtype: str, g: str,
               max_points: int) -> pd.DataFrame:
    """The product-limit estimate by hand: used where lifelines refuses a left-truncated
    group whose early risk set empties (it would recommend another estimator)."""
    tau = np.unique(np.concatenate([[0.0], t[e]]))
    at_risk = (np.searchsorted(np.sort(entry), tau, side="left")
               - np.searchsorted(np.sort(t), tau, side="left"))
    d = np.bincount(np.searchsorted(tau, t[e]), minlength=len(tau)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the curve starts where the risk set is worth reading (>= MIN_AT_RISK): one early
        # churn among two left-truncated customers would otherwise send it to 0 for good
        q = np.where(at_risk >= MIN_AT_RISK, d / np.maximum(at_risk, 1), 0.0)
        s = np.cumprod(1 - q)
        gw = np.cumsum(np.where((at_risk - d) > 0, d / (at_risk * np.maximum(at_risk - d, 1)), 0.0))
        logs = np.log(s)
        se = np.sqrt(gw) / np.abs(logs)
        cl = np.log(-logs)
        lower = np.exp(-np.exp(cl + 1.959964 * se))
        upper = np.exp(-np.exp(cl - 1.959964 * se))
    lower = np.where(np.isfinite(lower), lower, s)
    upper = np.where(np.isfinite(upper), upper, s)
    keep = np.arange(len(tau))
    if len(tau) > max_points:
        keep = np.unique(np.concatenate([np.linspace(0, len(tau) - 1, max_points).round()
                                         .astype(int), [len(tau) - 1]]))
    return pd.DataFrame({"group_type": gtype, "group_value": g, "timeline_days": tau[keep],
                         "survival": s[keep], "ci_lower": lower[keep], "ci_upper": upper[keep],
                         "at_risk": at_risk[keep].astype(int)})


def km_median(curve: pd.DataFrame) -> float | None:
    """Smallest time at which the curve reaches 0.5 (None if it never does)."""
    hit = curve[curve["survival"] <= 0.5]
    return None if hit.empty else float(hit["timeline_days"].iloc[0])


def plot_km(curves: pd.DataFrame, out_dir: Path, time_label: str = "tenure (days)"
            ) -> list[Path]:
    """One PNG per group type (``km_<group_type>.png``) with 95 % bands; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for gtype, part in curves.groupby("group_type", sort=True):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for g, c in part.groupby("group_value", sort=True):
            line = ax.step(c["timeline_days"], c["survival"], where="post", label=str(g))[0]
            ax.fill_between(c["timeline_days"], c["ci_lower"], c["ci_upper"], step="post",
                            alpha=0.15, color=line.get_color())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(time_label)
        ax.set_ylabel("share still a customer")
        ax.set_title(f"Kaplan–Meier by {gtype}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(gtype))
        p = out_dir / f"km_{safe}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths
