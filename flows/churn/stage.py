"""stage."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.design import ModelFitError, SurvivalData, _concordance
from flows.churn.families import FitConfig, _risk_at, _sample, fit_survival
from flows.churn.features import pipeline_data, score
from flows.churn.km import km_table, plot_km
from flows.churn.model import ChurnModel
from flows.churn.registry import (
    data_window_start,
    km_groups,
    latest_model,
    read_features,
    record_attempt,
    register,
    write_km,
    write_scores,
)
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class ChurnResult:
    model_version: str | None
    refitted: bool
    scored: int
    note: str
    metrics: dict[str, Any] = field(default_factory=dict)
    km_plots: list[str] = field(default_factory=list)


def refit_due(last: tuple[ChurnModel, datetime] | None, run_date: date, every_days: int,
              force: bool) -> str | None:
    """Why a refit is due, or None to score with the stored model."""
    if force:
        return "forced"
    if last is None:
        return "no stored model"
    trained_for = last[0].trained_for
    if trained_for is None or (run_date - trained_for).days >= every_days or run_date < trained_for:
        return f"scheduled (model trained for {trained_for}, every {every_days} days)"
    return None


def recent_concordance(model: ChurnModel, data: SurvivalData, since: date | None,
                       min_events: int = 20) -> tuple[float | None, int]:
    """Concordance of a stored model on customers who churned after it was trained.

    Comparable pairs pair each recent churner with everyone who outlasted them, so
    this is "does the model still rank who leaves first" on data it never saw.
    """
    churned_on = pd.to_datetime(data.frame.get("churned_on"), errors="coerce") \
        if "churned_on" in data.frame else None
    if since is None or churned_on is None:
        return None, 0
    recent = data.event & (churned_on > pd.Timestamp(since)).to_numpy()
    n_recent = int(recent.sum())
    if n_recent < min_events:
        return None, n_recent
    keep = recent | ~data.event
    sub = data.subset(np.flatnonzero(keep))
    sub = sub.subset(_sample(np.arange(len(sub.duration)), 100_000, 5))
    x = model.design(sub)
    t_star = float(model.parameters.get("risk_time_for_ranking") or np.median(sub.duration))
    risk = _risk_at(model, x, model.stratum_of(sub.frame), t_star)
    return _concordance(sub.duration, risk, sub.event), n_recent


def run_churn(wh: Warehouse, run_date: date, every_days: int = 7, force: bool = False,
              min_events: int = 30, min_concordance: float = 0.6,
              reports_dir: Path | None = None, cfg: FitConfig | None = None) -> ChurnResult:
    """Fit if due, else reuse; score active customers; keep the last good model on failure.

    ``reports_dir`` (e.g. ``<CXLOOP_HOME>/reports/<run_id>``) receives the
    Kaplan–Meier PNGs; the curves themselves always go to marts.churn_km_curves.
    """
    features = read_features(wh)
    window_start = data_window_start(wh)
    data = pipeline_data(features, window_start)
    last = latest_model(wh)
    reason = refit_due(last, run_date, every_days, force)
    drift_note = ""
    if reason is None and last is not None:
        c, n_recent = recent_concordance(last[0], data, last[0].trained_for)
        if c is not None and c < min_concordance:
            reason = (f"concordance on {n_recent} churns since training {c:.3f} "
                      f"< {min_concordance}")
        elif c is not None:
            drift_note = f"; concordance on {n_recent} recent churns {c:.3f}"
    model = last[0] if last else None
    refitted = False
    note = ""
    if reason is not None:
        cfg = cfg or FitConfig()
        cfg.min_events = min_events
        try:
            model = fit_survival(data, cfg, run_date)
            register(wh, model, run_date, features, window_start)
            refitted = True
            note = f"refitted ({reason}): {model.kind}, held-out concordance " \
                   f"{model.metrics['heldout_concordance']:.3f}"
        except ModelFitError as e:
            record_attempt(wh, run_date, "failed", f"{reason}: {e}")
            note = (f"refit failed ({e}); kept {model.version if model else 'no model'}"
                    + ("" if model else ", nothing scored"))
            log.warning(note)
    plots: list[str] = []
    try:
        curves = km_table(data.duration, data.event, data.entry, km_groups(wh, data))
        write_km(wh, curves, run_date)
        if reports_dir is not None:
            plots = [str(p) for p in plot_km(curves, Path(reports_dir))]
    except Exception as err:  # curves are descriptive; never let them cost the scores
        log.warning("Kaplan–Meier curves not written: %s", err)
    if model is None:
        return ChurnResult(None, False, 0, note or "no model", {}, plots)
    scores = score(model, features)
    n = write_scores(wh, scores, model, run_date) if len(scores) else 0
    return ChurnResult(model.version, refitted, n,
                       (note or f"scored with stored model {model.version}") + drift_note,
                       model.metrics, plots)
