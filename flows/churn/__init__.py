"""Churn: survival models of time to churn that are judged on the future.

The pipeline's model is fitted on *observations* (``intermediate.int_churn_observations``):
every active customer on a series of observation dates, with features computed only from
what the warehouse held up to that date, followed until churn or the next observation
(a counting-process / landmark design fitted by the own Cox with delayed entry). Quality
is one measure, an out-of-time backtest (fit before T - 90, score the observation at
T - 90, compare with what happened until T), against a tenure-only Kaplan–Meier baseline
and the previously active model; the backtest also calibrates the probabilities.

Modules: ``design`` (design matrix, survival data), ``cox`` (own Cox), ``model`` (a
fitted model), ``families`` (held-out fitting for snapshots: Cox vs AFT), ``holdout``,
``observations`` (the landmark design), ``backtest``, ``calibration``, ``scoring``,
``km``, ``snapshot`` (one-row-per-customer files), ``registry`` (warehouse IO, models as
JSON) and ``stage`` (the nightly step, ``run_churn``).
"""

from __future__ import annotations

from flows.churn.backtest import LandmarkConfig
from flows.churn.cox import CoxCore, _baseline_at, _cox_pieces, _fit_cox, _tail_shape
from flows.churn.design import (
    AFT_KINDS,
    CATEGORICAL,
    HORIZONS,
    PENALIZERS,
    RMST_HORIZON,
    RMST_STEP,
    DesignSpec,
    ModelFitError,
    SurvivalData,
    _concordance,
)
from flows.churn.families import (
    FitConfig,
    _aft_model,
    _check_fittable,
    _cox_model,
    _risk_at,
    _sample,
    fit_survival,
    split_data,
)
from flows.churn.holdout import _km_at, evaluate
from flows.churn.km import km_median, km_table, plot_km
from flows.churn.model import ChurnModel, _strata_labels
from flows.churn.registry import (
    _json_safe,
    data_window_start,
    latest_model,
    record_attempt,
    register,
    write_hazard_ratios,
    write_km,
    write_scores,
)
from flows.churn.scoring import score_frame, top_drivers
from flows.churn.snapshot import (
    SnapshotReport,
    fit_snapshot,
    parse_event,
    snapshot_data,
    synthetic_snapshot,
)
from flows.churn.stage import ChurnResult, refit_due, run_churn, score_observations

__all__ = [
    "AFT_KINDS", "CATEGORICAL", "ChurnModel", "ChurnResult", "CoxCore", "DesignSpec",
    "FitConfig", "HORIZONS", "LandmarkConfig", "ModelFitError", "PENALIZERS",
    "RMST_HORIZON", "RMST_STEP", "SnapshotReport", "SurvivalData", "_aft_model",
    "_baseline_at", "_check_fittable", "_concordance", "_cox_model", "_cox_pieces",
    "_fit_cox", "_json_safe", "_km_at", "_risk_at", "_sample", "_strata_labels",
    "_tail_shape", "data_window_start", "evaluate", "fit_snapshot", "fit_survival",
    "km_median", "km_table", "latest_model", "parse_event", "plot_km", "record_attempt",
    "refit_due", "register", "run_churn", "score_frame", "score_observations",
    "snapshot_data", "split_data", "synthetic_snapshot", "top_drivers", "write_hazard_ratios",
    "write_km", "write_scores",
]
