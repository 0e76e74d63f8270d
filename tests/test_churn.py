"""The survival churn model: published references, planted ground truth, bad input, IO."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows import churn

FOX = {"fin": -0.3794, "age": -0.0574, "race": 0.3139, "wexp": -0.1498, "mar": -0.4337,
       "paro": -0.0849, "prio": 0.0915}
REFERENCE = churn.FitConfig(model="cox", penalizer=0.0, ph_action="record")


def _telco() -> Path | None:
    for p in (Path(__file__).resolve().parents[2] / "shared/data/telco/Telco-Customer-Churn.csv",
              Path("/work/shared/data/telco/Telco-Customer-Churn.csv")):
        if p.exists():
            return p
    return None


def test_rossi_reproduces_fox_through_the_snapshot_path():
    from lifelines.datasets import load_rossi

    rep = churn.fit_snapshot(load_rossi(), "week", "arrest", cfg=REFERENCE)
    co = rep.coefficients.set_index("feature")["coef"]
    for k, v in FOX.items():
        assert co[k] == pytest.approx(v, abs=5e-4), k
    assert rep.model.metrics["train_concordance"] == pytest.approx(0.640, abs=1e-3)
    assert (rep.n, rep.events) == (432, 114)


def test_telco_cohort_matches_published_lifelines_results():
    path = _telco()
    if path is None:
        pytest.skip("IBM Telco file not found beside the repo nor in /work/shared")
    rep = churn.fit_snapshot(
        pd.read_csv(path), "tenure", "Churn",
        cohort="Contract == 'Month-to-month' and InternetService != 'No'",
        covariates=["Dependents", "InternetService", "OnlineBackup", "TechSupport"], cfg=REFERENCE)
    assert (rep.n, rep.events) == (3351, 1556)
    assert rep.km_median == 34
    co = rep.coefficients.set_index("feature")
    assert round(co.loc["InternetService_DSL", "coef"], 2) == -0.22
    assert round(co.loc["InternetService_DSL", "hazard_ratio"], 2) == 0.80
    assert set(co.index) == {"Dependents_Yes", "InternetService_DSL", "OnlineBackup_Yes",
                             "TechSupport_Yes"}
    # "the proportional-hazards assumption fails for 3 of the 4 covariates"
    assert len(rep.model.ph_check["violations"]) == 3
    assert rep.model.ph_check["action"].startswith("recorded")


# --- planted ground truth (flows.demo generator) -----------------------------------

def _truth(tmp: Path, seed: int) -> tuple[churn.SurvivalData, pd.DataFrame]:
    """The generator's true covariates as a snapshot: whole days, entry, signup order."""
    from flows.demo import BETAS, generate

    gen = generate(tmp / f"landing{seed}", customers=30_000, days=120, seed=seed)
    d = pd.read_parquet(gen.truth_customers_path)
    df = d[list(BETAS)].copy()
    df["duration"] = np.ceil(d["duration_days"])
    df["event"] = d["event"]
    df["entry"] = np.floor(d["entry_days"])
    df["signup"] = (pd.to_datetime(d["signup_date"]) - pd.Timestamp("1970-01-01")).dt.days
    df["risk_score"] = d["risk_score"]
    data = churn.snapshot_data(df, "duration", "event", covariates=list(BETAS), entry="entry",
                               order="signup")
    return data, df


@pytest.fixture(scope="module")
def truth_fit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truth")
    data, df = _truth(tmp, seed=4)
    cfg = churn.FitConfig()
    return data, df, cfg, churn.fit_survival(data, cfg, date(2026, 10, 28)), tmp


def test_planted_hazard_ratios_have_true_sign_and_ci_cover_truth(truth_fit):
    """95 % intervals cover the truth with probability 0.95 each; the seed is fixed."""
    from flows.demo import BETAS

    data, _, _, model, _ = truth_fit
    co = model.hazard_coefficients().set_index("feature")
    for k, beta in BETAS.items():
        assert np.sign(co.loc[k, "coef"]) == np.sign(beta), k
        assert co.loc[k, "ci_lower"] <= beta <= co.loc[k, "ci_upper"], (k, co.loc[k].to_dict())
    assert model.metrics["n_events"] == int(data.event.sum())


def test_heldout_concordance_close_to_oracle(truth_fit):
    data, _, cfg, model, _ = truth_fit
    _, hold, note = churn.split_data(data, cfg)
    assert note.startswith("time split")
    rows = churn._sample(np.arange(len(hold.duration)), cfg.eval_rows, cfg.seed + 1)
    ev = hold.subset(rows)
    from lifelines.utils import concordance_index

    truth_risk = ev.frame["risk_score"].to_numpy()  # the planted exp(x . beta), same customers
    oracle = concordance_index(ev.duration, -truth_risk, ev.event)
    heldout = model.metrics["heldout_concordance"]
    assert heldout >= oracle - 0.03, (heldout, oracle)
    assert model.metrics["integrated_brier"] < 0.25


def test_90_day_calibration_by_risk_decile_out_of_sample(truth_fit):
    """Fitted on one generated base, checked on another (different seed) over 90 days."""
    _, _, _, model, tmp = truth_fit
    fresh, _ = _truth(tmp, seed=5)
    res = churn.evaluate(model, fresh)
    assert len(res["deciles"]) == 10
    for d in res["deciles"]:
        assert abs(d["predicted"] - d["observed"]) <= 0.05, d
    assert model.metrics["calibration_90d"] is not None
    assert model.metrics["calibration_90d"] <= 0.05


def test_scores_are_conditional_probabilities_with_drivers(truth_fit):
    data, _, _, model, _ = truth_fit
    active = np.flatnonzero(~data.event)[:2000]
    frame = data.frame.iloc[active].reset_index(drop=True)
    s = churn.score_frame(model, frame, data.duration[active])
    for h in churn.HORIZONS:
        assert s[f"churn_prob_{h}"].between(0, 1).all()
    assert (s["churn_prob_30"] <= s["churn_prob_90"] + 1e-12).all()
    assert (s["churn_prob_90"] <= s["churn_prob_180"] + 1e-12).all()
    assert s["expected_remaining_days"].between(0, churn.RMST_HORIZON).all()
    drivers = [json.loads(t) for t in s["top_drivers"]]
    assert all(len(d) <= 3 for d in drivers)
    assert all(x["contribution"] > 0 for d in drivers for x in d)
    # a price-sensitive customer lists price sensitivity among the drivers
    ps = frame["price_sensitive"].to_numpy() == 1
    assert any(x["feature"] == "price_sensitive" for d, p in zip(drivers, ps, strict=True)
               if p for x in d)


def test_km_curves_and_plots(truth_fit, tmp_path):
    data, _, _, _, _ = truth_fit
    groups = {"all": np.full(len(data.duration), "all"),
              "goes_silent": data.frame["goes_silent"].astype(int).astype(str).to_numpy()}
    km = churn.km_table(data.duration, data.event, data.entry, groups)
    assert list(km.columns) == ["group_type", "group_value", "timeline_days", "survival",
                                "ci_lower", "ci_upper", "at_risk"]
    assert ((km["ci_lower"] <= km["survival"] + 1e-12)
            & (km["survival"] <= km["ci_upper"] + 1e-12)).all()
    silent = km[(km.group_type == "goes_silent") & (km.group_value == "1")]["survival"].iloc[-1]
    loyal = km[(km.group_type == "goes_silent") & (km.group_value == "0")]["survival"].iloc[-1]
    assert silent < loyal
    paths = churn.plot_km(km, tmp_path / "reports" / "run-1")
    assert {p.name for p in paths} == {"km_all.png", "km_goes_silent.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


# --- bad input ---------------------------------------------------------------------

def _small(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    df = churn.synthetic_snapshot(n, seed=seed)
    return df[["plan", "segment", "log_monthly_value", "billing_experience", "price_sensitive",
               "duration", "event", "entry", "signup_day"]]


def _fit(df: pd.DataFrame, **kw) -> churn.ChurnModel:
    data = churn.snapshot_data(df, "duration", "event", entry="entry", order="signup_day",
                               exclude=["signup_day", "entry"])
    return churn.fit_survival(data, churn.FitConfig(**kw))


def test_too_few_events_fails():
    df = _small()
    df.loc[df.index[20:], "event"] = 0
    with pytest.raises(churn.ModelFitError, match="churn events"):
        _fit(df)


def test_separated_flag_is_dropped_and_recorded():
    df = _small()
    df["vip"] = (df["event"] == 0).astype(int)  # nobody flagged ever churns
    m = _fit(df, model="cox")
    assert "vip" not in m.columns
    assert "separation" in m.parameters["dropped_features"]["vip"]


def test_fit_fails_when_every_feature_separates():
    df = _small()
    snap = pd.DataFrame({"vip": (df["event"] == 0).astype(int), "duration": df["duration"],
                         "event": df["event"]})
    data = churn.snapshot_data(snap, "duration", "event")
    with pytest.raises(churn.ModelFitError, match="no usable feature"):
        churn.fit_survival(data, churn.FitConfig())


def test_constant_feature_is_dropped_and_recorded():
    df = _small().assign(always_one=1.0)
    m = _fit(df, model="cox")
    assert "always_one" not in m.columns
    assert m.parameters["dropped_features"]["always_one"] == "no variance"


def test_non_convergence_fails():
    df = _small()
    df["copy"] = df["log_monthly_value"]  # perfectly collinear: singular information
    with pytest.raises(churn.ModelFitError):
        _fit(df, model="cox", penalizer=0.0)


# --- warehouse: registry, marts, keep the last good model ----------------------------

def test_cli_fits_a_snapshot_file(tmp_path):
    from lifelines.datasets import load_rossi
    from typer.testing import CliRunner

    from flows.cli import app

    csv = tmp_path / "rossi.csv"
    load_rossi().assign(arrest=lambda d: np.where(d.arrest == 1, "Yes", "No")).to_csv(csv, index=False)
    res = CliRunner().invoke(app, ["model", "fit", "--snapshot", str(csv), "--duration", "week",
                                   "--event", "arrest", "--model", "cox", "--penalizer", "0",
                                   "--ph", "record", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "432 customers, 114 churned" in res.output
    co = pd.read_csv(tmp_path / "out" / "coefficients.csv").set_index("feature")["coef"]
    assert co["prio"] == pytest.approx(0.0915, abs=5e-4)
    assert (tmp_path / "out" / "km_all.png").exists()


def test_telco_violating_categorical_becomes_a_stratum_and_scores():
    path = _telco()
    if path is None:
        pytest.skip("IBM Telco file not found beside the repo nor in /work/shared")
    df = pd.read_csv(path)
    rep = churn.fit_snapshot(df, "tenure", "Churn", exclude=["TotalCharges"])
    m = rep.model
    assert m.kind == "cox" and "Contract" in m.strata
    assert m.ph_check["action"].startswith("stratified on")
    assert not any(c.startswith("Contract_") for c in m.columns)
    assert m.metrics["heldout_concordance"] > 0.8
    active = ~churn.parse_event(df["Churn"])
    s = churn.score_frame(m, df[active].reset_index(drop=True), df["tenure"][active].to_numpy())
    assert s["churn_prob_90"].between(0, 1).all() and len(s) == int(active.sum())


def test_telco_default_snapshot_fit_excludes_the_leaking_total_charges():
    path = _telco()
    if path is None:
        pytest.skip("IBM Telco file not found beside the repo nor in /work/shared")
    df = pd.read_csv(path)
    data = churn.snapshot_data(df, "tenure", "Churn")
    assert "TotalCharges" not in data.numeric
    assert "leaks the duration" in data.notes["ignored_columns"]["TotalCharges"]
    assert "MonthlyCharges" in data.numeric  # a real covariate stays
    told = churn.snapshot_data(df, "tenure", "Churn", covariates=["TotalCharges", "Contract"])
    assert "TotalCharges" in told.numeric  # --covariates is honoured


def test_km_survives_a_left_truncated_group_whose_early_risk_set_empties():
    # one early churn while one customer is at risk: lifelines refuses (S(t) == 0 for
    # all t); the curve starts where the risk set is readable instead
    rng = np.random.default_rng(4)
    entry = np.concatenate([[0.0, 30.0], rng.uniform(20, 200, 200)])
    t = entry + rng.uniform(5, 100, len(entry))
    t[0] = 0.5
    e = np.zeros(len(t), bool)
    e[0] = True
    e[2:40] = True
    km = churn.km_table(t, e, entry, {"all": np.full(len(t), "all")})
    assert len(km) > 5 and km["survival"].iloc[1] > 0.9 and (km["survival"] > 0).all()
