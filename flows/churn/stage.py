"""The nightly churn step: fit on the landmark design when due, backtest, calibrate, score.

Every way the data can fail to support a model (no subscriptions loaded, a history too
short for a backtest, too few events, nothing usable in the features, a model no better
than tenure alone) ends in one line in the result's note and a row in
``ops.model_fit_attempts``; the previous model keeps scoring, or nothing is scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.churn.backtest import LandmarkConfig, raw_probabilities, run_backtest
from flows.churn.calibration import Calibration, cross_fitted, fit_calibration
from flows.churn.design import HORIZONS, ModelFitError, SurvivalData
from flows.churn.families import FitConfig
from flows.churn.km import km_table, plot_km
from flows.churn.model import ChurnModel
from flows.churn.observations import Observations, landmark, prepare, survival_rows
from flows.churn.reading import CHUNK_ROWS, observation_bounds, read_history, today_chunks
from flows.churn.registry import (
    copy_frame_into,
    data_window_start,
    drivers_table,
    km_groups,
    latest_model,
    record_attempt,
    register,
    scores_table,
    write_km,
    write_warning_lift,
)
from flows.churn.scoring import drivers_long, score_frame
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


def _version(run_date: date, pen: float, n: int, events: int) -> str:
    digest = hashlib.sha256(json.dumps(["landmark-cox", pen, run_date.isoformat(), n, events])
                            .encode()).hexdigest()[:8]
    return f"cox-landmark-{run_date:%Y%m%d}-{digest}"


def fit_landmark_model(obs: Observations, now: date, cfg: LandmarkConfig,
                       previous: ChurnModel | None, step: int | None = None
                       ) -> tuple[ChurnModel, bool, str]:
    """Backtest, calibrate, refit on everything; returns (model, promote?, why not).

    A history too short (or too quiet) for any out-of-time backtest still gets a model, fitted
    on everything and marked unvalidated (uncalibrated probabilities, no backtest figures),
    so a new installation scores from its first weeks; the first refit with enough history
    backtests it against tenure alone like any other.
    """
    try:
        bt = run_backtest(obs, now, cfg, previous)
    except ModelFitError as err:
        return _unvalidated_model(obs, now, cfg, str(err), step), True, ""
    km = bt.baselines["tenure_only_km"]
    cal = fit_calibration(bt.raw, bt.outcomes)
    honest = cross_fitted(bt.raw, bt.outcomes)
    from flows.churn.backtest import measure

    calibrated = measure({**bt.raw, **honest}, landmark(obs, bt.landmark_date, now))
    final_data = survival_rows(obs, now, now, cfg.follow_days, cfg.max_rows, cfg.seed)
    from flows.churn.backtest import fit_landmark_cox

    model = fit_landmark_cox(final_data, bt.penalizer, cfg.min_events, start=bt.model)
    model.trained_for = now
    model.version = _version(now, bt.penalizer, len(final_data.duration),
                             int(final_data.event.sum()))
    c_model, c_km = bt.figures["concordance"], km.get("concordance")
    promote = c_km is None or (c_model is not None and c_model > c_km + cfg.promote_margin)
    why = "" if promote else (f"backtest concordance {c_model:.3f} does not beat tenure "
                              f"alone ({c_km:.3f})")
    model.metrics = {
        "heldout_concordance": c_model, "calibration_90d": calibrated["calibration_max_gap_90"],
        "integrated_brier": None, "n_rows": int(len(final_data.duration)),
        "n_events": int(final_data.event.sum()),
        "backtest": {"landmark_date": bt.landmark_date,
                     "followed_days": (pd.Timestamp(now) - pd.Timestamp(bt.landmark_date)).days,
                     "model_raw": bt.figures, "model_calibrated_cross_fitted": calibrated,
                     "baselines": bt.baselines, "candidates": bt.candidates,
                     "promoted": promote, "not_promoted_because": why or None},
    }
    model.parameters.update({"design": "landmark observations every "
                             f"{step or _obs_step(obs)} days, followed {cfg.follow_days} days",
                             "selection": "penalizer by out-of-time backtest concordance",
                             "calibration": cal.as_dict(), "family": "cox",
                             "label": "hazard_ratio"})
    return model, promote, why


def _unvalidated_model(obs: Observations, now: date, cfg: LandmarkConfig, why: str,
                       step: int | None = None) -> ChurnModel:
    from flows.churn.backtest import fit_landmark_cox

    data = survival_rows(obs, now, now, cfg.follow_days, cfg.max_rows, cfg.seed)
    pen = cfg.penalizer if cfg.penalizer is not None else max(cfg.penalizers)
    model = fit_landmark_cox(data, pen, cfg.min_events)  # too few events: ModelFitError
    model.trained_for = now
    model.version = _version(now, pen, len(data.duration), int(data.event.sum()))
    model.metrics = {"heldout_concordance": None, "calibration_90d": None,
                     "integrated_brier": None, "n_rows": int(len(data.duration)),
                     "n_events": int(data.event.sum()), "backtest": None,
                     "unvalidated": why}
    model.parameters.update({"design": f"landmark observations every "
                             f"{step or _obs_step(obs)} days",
                             "selection": "none (no backtest possible); the largest penalizer",
                             "calibration": None, "family": "cox", "label": "hazard_ratio"})
    return model


def _obs_step(obs: Observations) -> int | None:
    d = obs.dates
    return int((d[-1] - d[-2]) / np.timedelta64(1, "D")) if len(d) > 1 else None


def score_observations(model: ChurnModel, obs: Observations, now: date) -> pd.DataFrame:
    """Calibrated 30/90/180-day probabilities for every customer active on ``now``."""
    rows = obs.at(now).reset_index(drop=True)
    if rows.empty:
        return pd.DataFrame()
    lm = landmark(obs, now, now)
    out = score_frame(model, rows, lm.tenure)
    cal = Calibration.from_dict(model.parameters.get("calibration"))
    probs = cal.apply(raw_probabilities(model, lm))
    for h in HORIZONS:
        out[f"churn_prob_{h}"] = probs[h]
        out[f"survival_{h}"] = 1.0 - probs[h]
    out.insert(0, "customer_id", rows["customer_id"].to_numpy())
    out.insert(1, "tenure_days", np.round(lm.tenure).astype(int))
    return out


def _km_data(obs: Observations, now: date) -> SurvivalData:
    """One row per customer for the descriptive curves: from first observation to churn/now."""
    f = obs.frame.sort_values("observation_date").drop_duplicates("customer_id")
    f = f.reset_index(drop=True)
    end = pd.Timestamp(now)
    churn = f["churned_on"]
    event = churn.notna() & (churn <= end)
    stop = churn.where(event, end)
    entry = pd.to_numeric(f["tenure_days"], errors="coerce").fillna(0).to_numpy(float)
    dur = entry + (stop - f["observation_date"]).dt.days.to_numpy(float)
    return SurvivalData(f, dur, event.to_numpy(bool), entry, [], [])


def run_churn(wh: Warehouse, run_date: date, every_days: int = 7, force: bool = False,
              min_events: int = 30, min_concordance: float = 0.6,
              reports_dir: Path | None = None, cfg: FitConfig | None = None,
              landmark_cfg: LandmarkConfig | None = None,
              chunk_rows: int = CHUNK_ROWS) -> ChurnResult:
    """Fit if due (schedule or force), else reuse; score today's active customers.

    Never raises for data that cannot support a model: the reason goes to
    ``ops.model_fit_attempts`` and the note. ``cfg.penalizer`` (from ``cxloop model fit``)
    fixes the penalizer instead of choosing it by the backtest. ``min_concordance`` is
    kept for the callers' signature; the backtest against tenure alone is the gate now.
    """
    lcfg = landmark_cfg or LandmarkConfig()
    lcfg.min_events = min_events
    if cfg is not None and cfg.penalizer is not None:
        lcfg.penalizer = cfg.penalizer
    bounds = observation_bounds(wh)
    if bounds is None or not bounds[0]:
        note = "skipped: no subscriptions extract"
        record_attempt(wh, run_date, "skipped", note)
        return ChurnResult(None, False, 0, note)
    _, today_rows, now = bounds
    # the fit and the curves read the earlier dates (sampled); the run date's rows, every
    # active customer, are read and scored in chunks below
    obs = prepare(read_history(wh, now, lcfg.max_rows))
    step = (now - pd.Timestamp(obs.dates[-1]).date()).days if len(obs.dates) else None
    last = latest_model(wh)
    reason = refit_due(last, run_date, every_days, force)
    model = last[0] if last else None
    refitted = False
    note = ""
    if reason is not None:
        try:
            cand, promote, why = fit_landmark_model(obs, now, lcfg, model, step)
            window_start = data_window_start(wh)
            bt = cand.metrics["backtest"]
            if bt is not None:
                write_warning_lift(wh, bt["model_raw"].get("flags", []), bt["landmark_date"],
                                   bt["followed_days"], lcfg.min_warning_lift,
                                   cand.version if promote else None)
            if promote and bt is None:
                register(wh, cand, run_date, None, window_start)
                model, refitted = cand, True
                note = (f"refitted ({reason}): landmark Cox, not validated "
                        f"({cand.metrics['unvalidated']}); probabilities uncalibrated")
            elif promote:
                register(wh, cand, run_date, None, window_start)
                model, refitted = cand, True
                note = (f"refitted ({reason}): landmark Cox, backtest concordance "
                        f"{cand.metrics['heldout_concordance']:.3f} vs tenure alone "
                        f"{bt['baselines']['tenure_only_km'].get('concordance') or 0:.3f}")
            else:
                register(wh, cand, run_date, None, window_start, status="rejected",
                         reason=f"not promoted: {why}")
                note = (f"not promoted: {why}; kept "
                        f"{model.version if model else 'no model'}"
                        + ("" if model else ", nothing scored"))
        except ModelFitError as err:
            record_attempt(wh, run_date, "failed", f"{reason}: {err}")
            note = (f"refit failed ({err}); kept {model.version if model else 'no model'}"
                    + ("" if model else ", nothing scored"))
            log.warning(note)
        except Exception as err:  # never a traceback for the run: say why in one line
            log.exception("churn fit failed")
            record_attempt(wh, run_date, "failed", f"{reason}: {type(err).__name__}: {err}")
            note = (f"refit failed ({type(err).__name__}: {str(err)[:160]}); kept "
                    f"{model.version if model else 'no model'}"
                    + ("" if model else ", nothing scored"))
    plots: list[str] = []
    try:
        kd = _km_data(obs, now)
        curves = km_table(kd.duration, kd.event, kd.entry, km_groups(wh, kd))
        write_km(wh, curves, run_date)
        if reports_dir is not None:
            plots = [str(p) for p in plot_km(curves, Path(reports_dir))]
    except Exception as err:  # curves are descriptive; never let them cost the scores
        log.warning("Kaplan–Meier curves not written: %s", err)
    if model is None:
        return ChurnResult(None, False, 0, note or "no model", {}, plots)
    like = obs if len(obs.frame) else None
    del obs  # the training rows are done with; the scoring chunks follow
    try:
        n = score_in_chunks(wh, model, now, run_date, today_rows, like, chunk_rows)
    except Exception as err:  # a stored model that no longer fits the table
        log.exception("churn scoring failed")
        return ChurnResult(model.version, refitted, 0,
                           f"{note + '; ' if note else ''}scoring failed ({err}); nothing scored",
                           model.metrics, plots)
    return ChurnResult(model.version, refitted, n,
                       note or f"scored with stored model {model.version}", model.metrics, plots)


def score_in_chunks(wh: Warehouse, model: ChurnModel, now: date, run_date: date, rows: int,
                    like: Observations | None, chunk_rows: int = CHUNK_ROWS) -> int:
    """Score every customer active on ``now``, ``chunk_rows`` at a time, and replace the
    scores and their drivers in one transaction (a failing chunk leaves the previous
    scores in place). Memory follows the chunk, not the customer base."""
    n = 0
    if not rows:
        return 0  # nobody active on the date: the previous scores stay
    scored_at = datetime.now(UTC).isoformat()
    with wh.transaction() as cur:
        # truncate, not delete: deleting a million rows took 35 s and left the table twice
        # its size for vacuum; still one transaction (a reader waits for the new scores)
        cur.execute("truncate marts.churn_scores, marts.churn_drivers")
        for raw in today_chunks(wh, now, rows, chunk_rows):
            part = prepare(raw, like)
            del raw
            scores = score_observations(model, part, now)
            if scores.empty:
                continue
            copy_frame_into(cur, "marts.churn_scores",
                            scores_table(scores, model, run_date, scored_at))
            n += len(scores)
            del scores
            rows_now = part.at(now).reset_index(drop=True)
            copy_frame_into(cur, "marts.churn_drivers", drivers_table(
                drivers_long(model, rows_now, rows_now["customer_id"].to_numpy()), model,
                run_date))
    return n
