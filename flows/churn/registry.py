"""Warehouse IO of the churn stage: the model registry (models as JSON), scores, curves.

Models are stored as JSON text in ``ops.model_registry.model_blob`` (never a pickle: a
pickle in the warehouse runs code when it is loaded); a blob that is not a cxloop model
document (e.g. a pickle from an older cxloop) is ignored and a refit is due.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2.extras import Json, execute_values

from flows.churn.design import SurvivalData
from flows.churn.model import ChurnModel, model_from_json, model_to_json
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

# --- warehouse IO -----------------------------------------------------------------

def data_window_start(wh: Warehouse) -> date | None:
    """The first extract date of subscriptions that was loaded: where observation begins."""
    with wh.transaction() as cur:
        cur.execute("select min(extract_date) from ops.load_batches where entity = 'subscriptions' "
                    "and status = 'loaded'")
        row = cur.fetchone()
    return row[0] if row else None


def latest_model(wh: Warehouse) -> tuple[ChurnModel, datetime] | None:
    with wh.transaction() as cur:
        cur.execute("select model_blob, trained_at from ops.model_registry where status = 'active' "
                    "and model_blob is not null order by trained_at desc limit 1")
        row = cur.fetchone()
    if row is None:
        return None
    try:
        model = model_from_json(json.loads(bytes(row[0]).decode("utf-8")))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        log.warning("stored churn model cannot be read (%s); a refit is due", err)
        return None
    return model, row[1]


def _json_safe(obj: Any) -> Any:
    """numpy scalars to Python, NaN/inf to null: jsonb accepts neither."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def register(wh: Warehouse, model: ChurnModel, run_date: date, features: pd.DataFrame | None = None,
             window_start: date | None = None, status: str = "active", reason: str | None = None
             ) -> None:
    """Store a model version with its backtest figures, in one transaction.

    ``status='active'`` promotes it (retiring the others, replacing the coefficient mart);
    ``'rejected'`` records a model that lost to the tenure-only baseline and leaves the
    active one in place.
    """
    blob = json.dumps(model_to_json(model)).encode("utf-8")
    m = model.metrics
    with wh.transaction() as cur:
        cur.execute(
            "insert into ops.model_registry (model_version, trained_at, run_date, model_kind, "
            "data_window_start, data_window_end, n_rows, n_events, features, parameters, "
            "heldout_concordance, integrated_brier, calibration_90d, ph_check, status, model_blob) "
            "values (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (model_version) do update set trained_at = excluded.trained_at, "
            "model_blob = excluded.model_blob, status = excluded.status, "
            "parameters = excluded.parameters, ph_check = excluded.ph_check, "
            "heldout_concordance = excluded.heldout_concordance, "
            "calibration_90d = excluded.calibration_90d",
            (model.version, run_date, model.kind, window_start, run_date, m["n_rows"],
             m["n_events"], Json(model.columns), Json(_json_safe(
                 {**model.parameters, "metrics": m})),
             m.get("heldout_concordance"), m.get("integrated_brier"), m.get("calibration_90d"),
             Json(_json_safe(model.ph_check)), status, blob),
        )
        if status == "active":
            cur.execute("update ops.model_registry set status = 'retired' where status = 'active' "
                        "and model_version <> %s", (model.version,))
            write_hazard_ratios(cur, model)
        cur.execute("insert into ops.model_fit_attempts (run_date, outcome, reason) "
                    "values (%s, %s, %s)", (run_date, "fitted" if status == "active" else status,
                                            reason or model.version))


def effect_label(kind: str) -> str:
    """Hazard ratios for proportional-hazards models, time ratios for AFT models."""
    return "hazard_ratio" if kind == "cox" else "time_ratio"


def write_hazard_ratios(cur: Any, model: ChurnModel) -> None:
    """The coefficient table, labelled by family.

    ``hazard_ratio`` keeps its meaning for every family (the effect on the hazard, exact
    for Cox and Weibull, log-odds of having churned for log-logistic); ``effect_ratio`` is
    what the family's own coefficient means, named by ``effect_label``: exp(coef) on the
    hazard for Cox, exp(coef) on the time to churn (time ratio, > 1 = stays longer) for AFT.
    """
    cur.execute("truncate marts.churn_hazard_ratios")
    co = model.hazard_coefficients()
    label = effect_label(model.kind)
    own = np.exp(model.coef)
    execute_values(cur, "insert into marts.churn_hazard_ratios (model_version, feature, coef, "
                   "hazard_ratio, ci_lower, ci_upper, p_value, effect_label, effect_ratio) "
                   "values %s", [
        (model.version, r.feature, float(r.coef), float(np.exp(r.coef)),
         float(np.exp(r.ci_lower)), float(np.exp(r.ci_upper)),
         None if not np.isfinite(r.p_value) else float(r.p_value), label, float(own[i]))
        for i, r in enumerate(co.itertuples())])


def copy_frame_into(cur: Any, table: str, frame: pd.DataFrame) -> None:
    """COPY a frame into ``table`` (its columns by name): a million rows in seconds, where
    row-by-row inserts would take a minute. Arrow writes the CSV (a missing value as an
    unquoted empty field, COPY's null; an empty string quoted): pandas' ``to_csv`` took
    23 s of a 1M-customer nightly's scoring."""
    import io

    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buf,
                    pacsv.WriteOptions(include_header=False))
    buf.seek(0)
    cols = ", ".join(frame.columns)
    cur.copy_expert(f"copy {table} ({cols}) from stdin with (format csv)", buf)


def drivers_table(drivers: pd.DataFrame, model: ChurnModel, run_date: date) -> pd.DataFrame:
    """Rows of marts.churn_drivers (customer, rank, feature, value, contribution)."""
    return pd.DataFrame({
        "customer_id": drivers["customer_id"].astype(str),
        "driver_rank": drivers["driver_rank"].astype(int), "model_version": model.version,
        "run_date": run_date.isoformat(), "feature": drivers["feature"].astype(str),
        "value": drivers["value"].astype("string"),
        "contribution": drivers["contribution"].astype(float)})


def write_drivers(wh: Warehouse, drivers: pd.DataFrame, model: ChurnModel, run_date: date
                  ) -> int:
    """Replace the long driver table (customer, rank, feature, value, contribution)."""
    frame = drivers_table(drivers, model, run_date)
    with wh.transaction() as cur:
        cur.execute("truncate marts.churn_drivers")
        copy_frame_into(cur, "marts.churn_drivers", frame)
    return len(frame)


def scores_table(scores: pd.DataFrame, model: ChurnModel, run_date: date,
                 scored_at: str | None = None) -> pd.DataFrame:
    """Rows of marts.churn_scores for scored customers."""
    cols = ["survival_30", "survival_90", "survival_180", "churn_prob_30", "churn_prob_90",
            "churn_prob_180", "expected_remaining_days"]
    return pd.DataFrame({"customer_id": scores["customer_id"].astype(str),
                         "model_version": model.version,
                         "scored_at": scored_at or datetime.now(UTC).isoformat(),
                         "run_date": run_date.isoformat(),
                         "tenure_days": scores["tenure_days"].astype(int),
                         **{c: scores[c].astype(float) for c in cols},
                         "top_drivers": scores["top_drivers"].astype(str)})


def write_scores(wh: Warehouse, scores: pd.DataFrame, model: ChurnModel, run_date: date) -> int:
    """Replace the scores with this run's, in one transaction (a re-run gives the same table)."""
    frame = scores_table(scores, model, run_date)
    with wh.transaction() as cur:
        cur.execute("truncate marts.churn_scores")
        copy_frame_into(cur, "marts.churn_scores", frame)
    return len(frame)


def _value_top_share() -> float:
    try:
        import yaml

        p = Path(__file__).resolve().parent.parent / "dbt_project" / "dbt_project.yml"
        return float(yaml.safe_load(p.read_text())["vars"]["value_top_share"])
    except Exception:
        return 0.25


def km_groups(wh: Warehouse | None, data: SurvivalData) -> dict[str, np.ndarray]:
    """Segment, value tier and Apostle group of every customer (churned ones included).

    mart_customer_360's value tier is built after this step and is null for churned
    customers, so the tier here is its value part only: the top ``value_top_share``
    by monthly value ('retain_at_all_costs') against everyone else ('other').
    """
    f = data.frame
    groups: dict[str, np.ndarray] = {"all": np.full(len(f), "all", dtype=object)}
    if "segment" in f:
        groups["segment"] = f["segment"].astype(str).to_numpy()
    if "monthly_value" in f:
        v = pd.to_numeric(f["monthly_value"], errors="coerce")
        cut = v.quantile(1 - _value_top_share())
        groups["value_tier"] = np.where(v >= cut, "retain_at_all_costs", "other").astype(object)
    if wh is not None:
        try:
            ap = wh.read_frame("select customer_id, apostle_group from marts.mart_apostle_segments")
            m = dict(zip(ap["customer_id"].astype(str), ap["apostle_group"], strict=True))
            groups["apostle_group"] = np.array(
                [m.get(c) or "no relationship survey" for c in f["customer_id"]], dtype=object)
        except Exception as err:  # the mart may not exist yet on a fresh warehouse
            log.info("no Apostle groups for Kaplan–Meier curves: %s", err)
    return groups


def write_km(wh: Warehouse, curves: pd.DataFrame, run_date: date) -> int:
    with wh.transaction() as cur:
        cur.execute("truncate marts.churn_km_curves")
        execute_values(cur, "insert into marts.churn_km_curves (run_date, group_type, group_value, "
                       "timeline_days, survival, ci_lower, ci_upper, at_risk) values %s",
                       [(run_date, r.group_type, r.group_value, float(r.timeline_days),
                         float(r.survival), float(r.ci_lower), float(r.ci_upper), int(r.at_risk))
                        for r in curves.itertuples()], page_size=5000)
    return len(curves)


def _jsonb(v: Any) -> Any:
    return v if isinstance(v, str) else Json(v)


def record_attempt(wh: Warehouse, run_date: date, outcome: str, reason: str) -> None:
    with wh.transaction() as cur:
        cur.execute("insert into ops.model_fit_attempts (run_date, outcome, reason) "
                    "values (%s, %s, %s)", (run_date, outcome, reason))


def write_warning_lift(wh: Warehouse, flags: list[dict[str, Any]], landmark_date: str,
                       horizon: int, min_lift: float, model_version: str | None) -> int:
    """Replace the early-warning lift table with this backtest's figures.

    ``flag_<name>`` columns of the observation table are the flags of mart_early_warnings
    named ``<name>``; a flag whose lift is below ``min_lift`` at the lower end of its
    confidence interval (``lift_lower``; or unmeasurable) is non-predictive, and task
    rules read that: a handful of flagged customers that churned by chance prove nothing.
    """
    now = datetime.now(UTC)
    rows = [(f["flag"].removeprefix("flag_"), landmark_date, horizon, f["n_customers"],
             f["n_flagged"], f["base_rate"], f["precision"], f["recall"], f["lift"],
             bool(f.get("lift_lower", f["lift"]) is not None
                  and f.get("lift_lower", f["lift"]) >= min_lift), now, model_version)
            for f in flags]
    with wh.transaction() as cur:
        cur.execute("delete from marts.churn_warning_lift")
        if rows:
            execute_values(cur, "insert into marts.churn_warning_lift values %s", rows)
    return len(rows)
