"""The pipeline's churn stage on the landmark design: backtest, calibration, bad input.

The warehouse tests write an ``int_churn_observations``-shaped table of synthetic
customers whose unresolved contacts carry a planted hazard, then run the real stage
(own Cox, lifelines Kaplan–Meier baseline, registry, scores) against the embedded
PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from flows import churn
from flows.churn.backtest import LandmarkConfig
from flows.churn.calibration import Isotonic, cross_fitted, fit_calibration

RUN = date(2026, 12, 31)
START = RUN - timedelta(days=240)


def synthetic_observations(n: int, seed: int, effect: float = 0.9, every: int = 30
                           ) -> pd.DataFrame:
    """Customers with an exponential churn hazard exp(effect * propensity), observed every
    ``every`` days from START to RUN; unresolved contacts are Poisson in the propensity."""
    rng = np.random.default_rng(seed)
    prop = rng.normal(size=n)
    tenure0 = rng.uniform(0, 900, n)
    t_churn = rng.exponential(1 / (0.0015 * np.exp(effect * prop)))
    churn_day = np.floor(t_churn).astype(int)  # days after START
    plan = rng.choice(["basic", "plus"], n)
    rows = []
    dates = [RUN - timedelta(days=k * every) for k in range(0, 400 // every)]
    dates = [d for d in dates if d > START]
    for d in dates:
        day = (d - START).days
        alive = churn_day > day
        idx = np.flatnonzero(alive)
        window = min(90, day + 1)
        unresolved = rng.poisson(0.5 * np.exp(0.8 * prop[idx]) * window / 90) * 90 / window
        rows.append(pd.DataFrame({
            "customer_id": [f"C{i:06d}" for i in idx], "observation_date": d,
            "data_start_date": START, "observed_window_days": window,
            "signup_date": [START - timedelta(days=int(t)) for t in tenure0[idx]],
            "tenure_days": (tenure0[idx] + day).astype(int),
            "churned_on": [START + timedelta(days=int(c)) if START + timedelta(days=int(c)) <= RUN
                           else None for c in churn_day[idx]],
            "plan": plan[idx], "monthly_value": 20.0 + 10 * (plan[idx] == "plus"),
            "unresolved_per_90d": unresolved,
            "answer_rate": np.where(rng.random(len(idx)) < 0.3, np.nan, rng.random(len(idx))),
            "flag_silent_responder": unresolved > 2,
            "flag_noise": rng.random(len(idx)) < 0.1,
            "features_as_of": d}))
    df = pd.concat(rows, ignore_index=True)
    df.insert(0, "observation_id", df["customer_id"] + "|" + df["observation_date"].astype(str))
    return df


def load_observations(wh, df: pd.DataFrame) -> None:
    from psycopg2.extras import execute_values

    types = {"observation_date": "date", "data_start_date": "date", "signup_date": "date",
             "churned_on": "date", "features_as_of": "date", "observed_window_days": "int",
             "tenure_days": "int", "monthly_value": "float8", "unresolved_per_90d": "float8",
             "answer_rate": "float8", "flag_silent_responder": "boolean",
             "flag_noise": "boolean"}
    cols = list(df.columns)
    ddl = ", ".join(f"{c} {types.get(c, 'text')}" for c in cols)
    with wh.transaction() as cur:
        cur.execute("create schema if not exists intermediate; "
                    "drop table if exists intermediate.int_churn_observations; "
                    f"create table intermediate.int_churn_observations ({ddl})")
        values = [tuple(None if (isinstance(v, float) and np.isnan(v)) or v is pd.NaT else
                        (v.item() if hasattr(v, "item") else v) for v in r)
                  for r in df.itertuples(index=False)]
        execute_values(cur, f"insert into intermediate.int_churn_observations ({', '.join(cols)}) "
                            "values %s", values, page_size=5000)


def test_isotonic_calibration_keeps_order_and_matches_rates():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.4, 20_000)
    y = rng.random(len(p)) < 0.5 * p  # the model over-predicts by a factor two
    iso = Isotonic.fit(p, y)
    q = iso(p)
    assert np.all(np.diff(q[np.argsort(p)]) >= -1e-12)  # monotone
    assert abs(q.mean() - y.mean()) < 0.01
    assert abs(iso(np.array([0.3]))[0] - 0.15) < 0.03
    honest = cross_fitted({30: p, 90: p, 180: p}, {90: y})
    assert abs(honest[90].mean() - y.mean()) < 0.01
    cal = fit_calibration({30: p / 3, 90: p, 180: np.minimum(2 * p, 1)}, {90: y})
    out = cal.apply({30: p / 3, 90: p, 180: np.minimum(2 * p, 1)})
    assert np.all(out[180] >= out[90]) and np.all(out[90] >= out[30])


def test_no_observations_is_skipped_in_one_line(warehouse):
    res = churn.run_churn(warehouse, RUN, force=True)
    assert isinstance(res, churn.ChurnResult)
    assert res.scored == 0 and res.model_version is None
    assert res.note == "skipped: no subscriptions extract"
    att = warehouse.read_frame("select outcome, reason from ops.model_fit_attempts")
    assert att.outcome.tolist() == ["skipped"]


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    return synthetic_observations(6000, 3)


def test_landmark_fit_backtests_calibrates_scores_and_keeps_last_good_model(warehouse,
                                                                             observations):
    load_observations(warehouse, observations)
    res = churn.run_churn(warehouse, RUN, force=True)
    assert res.refitted, res.note
    assert "backtest concordance" in res.note
    assert res.scored == int((observations.observation_date == RUN).sum())
    reg = warehouse.read_frame("select model_version, status, heldout_concordance, "
                               "calibration_90d, parameters, model_blob from ops.model_registry")
    assert reg.status.tolist() == ["active"]
    bt = reg.parameters[0]["metrics"]["backtest"]
    assert bt["landmark_date"] == str(RUN - timedelta(days=90))
    km = bt["baselines"]["tenure_only_km"]
    raw = bt["model_raw"]
    # the planted propensity is visible through unresolved contacts: beats tenure alone
    assert raw["concordance"] > km["concordance"] + 0.05
    assert raw["auc_90"] > 0.6 and raw["auc_180"] is None  # 180 days not observable
    assert raw["top_decile_capture"] > 0.15
    assert bt["model_calibrated_cross_fitted"]["calibration_max_gap_90"] < 0.05
    lift = {f["flag"]: f for f in raw["flags"]}
    assert lift["flag_silent_responder"]["lift"] > 1.2 > lift["flag_noise"]["lift"]
    # the model is stored as JSON (not a pickle) and reads back into the same model
    doc = json.loads(bytes(reg.model_blob[0]).decode("utf-8"))
    assert doc["format"] == "cxloop-churn-model/1" and "unresolved_per_90d" in doc["columns"]
    sc = warehouse.read_frame("select * from marts.churn_scores")
    assert sc.churn_prob_90.between(0, 1).all()
    assert (sc.churn_prob_180 >= sc.churn_prob_90 - 1e-12).all()
    assert (sc.churn_prob_90 >= sc.churn_prob_30 - 1e-12).all()
    # drivers as a long table; coefficients labelled by family
    drv = warehouse.read_frame("select * from marts.churn_drivers")
    assert set(drv.driver_rank) <= {1, 2, 3} and (drv.contribution > 0).all()
    assert drv.groupby("customer_id").driver_rank.apply(lambda r: r.is_unique).all()
    top = drv[drv.driver_rank == 1].feature.value_counts()
    assert top.index[0] == "unresolved_per_90d"  # the planted cause leads
    hr = warehouse.read_frame("select distinct effect_label from marts.churn_hazard_ratios")
    assert hr.effect_label.tolist() == ["hazard_ratio"]
    first = res.model_version

    again = churn.run_churn(warehouse, RUN)
    assert not again.refitted and again.model_version == first and again.scored == res.scored

    # too few churn events: the refit fails, the previous model keeps scoring
    few = observations.copy()
    churners = few.customer_id[few.churned_on.notna()].unique()
    few.loc[few.customer_id.isin(churners[5:]), "churned_on"] = None
    load_observations(warehouse, few)
    res2 = churn.run_churn(warehouse, RUN + timedelta(days=1), force=True)
    assert not res2.refitted and res2.model_version == first
    assert "kept " + first in res2.note and "churn events" in res2.note
    att = warehouse.read_frame("select outcome, reason from ops.model_fit_attempts "
                               "order by attempted_at")
    assert att.outcome.tolist() == ["fitted", "failed"]


def test_a_model_no_better_than_tenure_is_not_promoted(warehouse):
    obs = synthetic_observations(4000, 5, effect=0.0)  # features carry nothing
    load_observations(warehouse, obs)
    res = churn.run_churn(warehouse, RUN, force=True,
                          landmark_cfg=LandmarkConfig(promote_margin=0.05))
    assert not res.refitted and res.scored == 0
    assert res.note.startswith("not promoted: backtest concordance")
    assert "nothing scored" in res.note
    reg = warehouse.read_frame("select status from ops.model_registry")
    assert reg.status.tolist() == ["rejected"]


def test_constant_and_missing_features_are_dropped_not_fatal(warehouse, observations):
    obs = observations.copy()
    obs["answer_rate"] = np.nan  # entirely missing
    obs["plan"] = "basic"  # constant
    load_observations(warehouse, obs)
    res = churn.run_churn(warehouse, RUN, force=True)
    assert res.refitted, res.note
    reg = warehouse.read_frame("select parameters from ops.model_registry")
    dropped = reg.parameters[0]["dropped_features"]
    assert "answer_rate" in dropped and "all values missing" in dropped["answer_rate"]


def test_history_too_short_for_a_backtest_fits_an_unvalidated_model(warehouse, observations):
    short = observations[observations.observation_date > RUN - timedelta(days=60)]
    load_observations(warehouse, short)
    res = churn.run_churn(warehouse, RUN, force=True)
    assert res.refitted and res.scored > 0
    assert "not validated (history too short for a backtest" in res.note
    reg = warehouse.read_frame("select status, heldout_concordance, parameters "
                               "from ops.model_registry")
    assert reg.status.tolist() == ["active"] and reg.heldout_concordance.isna().all()
    assert reg.parameters[0]["metrics"]["backtest"] is None


def test_a_shorter_history_backtests_over_a_shorter_follow_up(warehouse, observations):
    short = observations[observations.observation_date > RUN - timedelta(days=100)]
    load_observations(warehouse, short)  # dates RUN, -30, -60, -90: the landmark is RUN - 60
    res = churn.run_churn(warehouse, RUN, force=True)
    assert res.refitted, res.note
    bt = res.metrics["backtest"]
    assert bt["landmark_date"] == str(RUN - timedelta(days=60)) and bt["followed_days"] == 60
    assert bt["model_raw"]["auc_90"] is None and bt["model_raw"]["auc_30"] is not None


def test_a_single_observation_date_scores_nothing_and_says_why(warehouse, observations):
    load_observations(warehouse, observations[observations.observation_date == RUN])
    res = churn.run_churn(warehouse, RUN, force=True)
    assert res.scored == 0 and not res.refitted
    assert res.note.startswith("refit failed (only 0 churned customers")
    att = warehouse.read_frame("select outcome from ops.model_fit_attempts")
    assert att.outcome.tolist() == ["failed"]


def test_flag_lift_is_written_and_marks_non_predictive_flags(warehouse, observations):
    load_observations(warehouse, observations)
    churn.run_churn(warehouse, RUN, force=True)
    lift = warehouse.read_frame("select * from marts.churn_warning_lift order by flag")
    assert lift.flag.tolist() == ["noise", "silent_responder"]  # flag_ prefix dropped
    by = lift.set_index("flag")
    assert by.loc["silent_responder", "is_predictive"] and not by.loc["noise", "is_predictive"]
    assert by.loc["silent_responder", "recall"] > 0 and by.loc["noise", "lift"] < 1.2


def test_large_tables_are_sampled_by_customer_in_sql_and_for_the_search(warehouse,
                                                                         observations):
    load_observations(warehouse, observations)
    cfg = LandmarkConfig(max_rows=20_000, search_rows=8_000)
    res = churn.run_churn(warehouse, RUN, force=True, landmark_cfg=cfg)
    assert res.refitted, res.note
    # every current customer is scored although older rows were sampled
    assert res.scored == int((observations.observation_date == RUN).sum())
    bt = res.metrics["backtest"]
    assert all(c["fitted_rows"] <= 8_000 * 1.2 for c in bt["candidates"])
    assert bt["model_raw"]["training_rows"] <= 20_000
    assert res.metrics["n_rows"] <= 20_000 * 1.2
    assert bt["model_raw"]["concordance"] > bt["baselines"]["tenure_only_km"]["concordance"]
    # scoring in chunks of customers (memory bounded by the chunk) gives the same table
    cols = "customer_id, churn_prob_90, top_drivers"
    whole = warehouse.read_frame(f"select {cols} from marts.churn_scores order by customer_id")
    drivers = warehouse.read_frame("select count(*) as n from marts.churn_drivers").n.iloc[0]
    again = churn.run_churn(warehouse, RUN, landmark_cfg=cfg, chunk_rows=700)
    assert not again.refitted and again.scored == res.scored
    chunked = warehouse.read_frame(f"select {cols} from marts.churn_scores order by customer_id")
    assert chunked.customer_id.is_unique and chunked.customer_id.tolist() == whole.customer_id.tolist()
    assert np.allclose(chunked.churn_prob_90, whole.churn_prob_90)
    assert (chunked.top_drivers == whole.top_drivers).all()
    assert warehouse.read_frame("select count(*) as n from marts.churn_drivers").n.iloc[0] == drivers


def test_a_flag_whose_lift_may_be_chance_is_judged_on_its_lower_bound():
    from flows.churn.backtest import flag_lift
    from flows.churn.observations import Landmark

    # 10,000 customers, 10 % churn; flag "few": 40 flagged, 8 churned (point lift 2.0);
    # flag "many": 2,000 flagged, 400 churned (lift 2.0, tight interval)
    n = 10_000
    churned = np.zeros(n, bool)
    churned[:1000] = True
    few = np.zeros(n, bool)
    few[:8] = few[1000:1032] = True
    many = np.zeros(n, bool)
    many[:400] = many[1000:2600] = True
    lm = Landmark(pd.DataFrame({"flag_few": few, "flag_many": many}), np.zeros(n),
                  np.where(churned, 10.0, np.nan), 90)
    by = {f["flag"]: f for f in flag_lift(lm, ["flag_few", "flag_many"])}
    assert by["flag_few"]["lift"] == pytest.approx(2.0)
    assert by["flag_many"]["lift"] == pytest.approx(2.0)
    assert by["flag_few"]["lift_lower"] < 1.2 < by["flag_many"]["lift_lower"] < 2.0
