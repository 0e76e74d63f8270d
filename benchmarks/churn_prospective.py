"""Churn scores against the future: the issue-13 "done when" figures on demo data.

Generate demo extracts (``--customers`` x ``--days``), backfill all but the last
``--future`` days, score, then compare ``churn_prob_90`` with what the generator's truth
(``_truth/customers.parquet``) says happened in the next 90 days, next to the true
risk and tenure alone. Writes JSON to ``benchmarks/results/``.

    python -m benchmarks.churn_prospective --customers 20000 --days 300 --seed 4242
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def _auc(score: np.ndarray, pos: np.ndarray) -> float:
    from scipy.stats import rankdata

    n1, n0 = int(pos.sum()), int((~pos).sum())
    r = rankdata(score)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def prospective_figures(scores: pd.DataFrame, truth_dir: Path, run_date: date,
                        horizon: int = 90) -> dict[str, Any]:
    """Scores (customer_id, churn_prob_90) against the truth's next ``horizon`` days."""
    from lifelines.utils import concordance_index

    truth = json.loads((truth_dir / "truth.json").read_text())
    cust = pd.read_parquet(truth_dir / "customers.parquet")
    k, lam = truth["hazard_model"]["baseline"]["k"], truth["hazard_model"]["baseline"]["lam"]
    df = scores[["customer_id", "churn_prob_90"]].merge(cust, on="customer_id", how="inner")
    rd = pd.Timestamp(run_date)
    churn = pd.to_datetime(df["churn_date"])
    df = df[churn.isna() | (churn > rd)].reset_index(drop=True)
    churn = pd.to_datetime(df["churn_date"])
    days = (churn - rd).dt.days.to_numpy(float)
    event = ~np.isnan(days) & (days <= horizon)
    t = np.where(event, days, horizon)
    tenure = (rd - pd.to_datetime(df["signup_date"])).dt.days.to_numpy(float).clip(0)
    true_p = 1 - np.exp(-(((tenure + horizon) / lam) ** k - (tenure / lam) ** k)
                        * df["risk_score"].to_numpy(float))
    p = df["churn_prob_90"].to_numpy(float)

    def conc(score: np.ndarray) -> float:
        return float(concordance_index(t, -score, event))

    def top_decile(score: np.ndarray) -> np.ndarray:
        return score >= np.quantile(score, 0.9)

    top, true_top = top_decile(p), top_decile(true_p)
    q = np.minimum((pd.Series(p).rank(method="first").to_numpy() - 1) * 10 // len(p), 9)
    dec = [{"decile": int(d + 1), "predicted": round(float(p[q == d].mean()), 4),
            "observed": round(float(event[q == d].mean()), 4)} for d in range(10)]
    out: dict[str, Any] = {
        "customers_scored": int(len(df)), "churned_within_90": int(event.sum()),
        "concordance": conc(p), "true_risk_concordance": conc(true_p),
        "tenure_only_concordance": conc(-tenure),
        "auc_90": _auc(p, event), "true_risk_auc_90": _auc(true_p, event),
        "top_decile_churners": int(event[top].sum()),
        "true_top_decile_churners": int(event[true_top].sum()),
        "calibration_deciles": dec,
        "calibration_max_gap": max(abs(d["predicted"] - d["observed"]) for d in dec),
    }
    out["top_decile_vs_true"] = out["top_decile_churners"] / max(1, out["true_top_decile_churners"])
    df["planted_cause"] = df["goes_silent"].astype(bool) | df["price_sensitive"].astype(bool)
    for trait in ("goes_silent", "price_sensitive", "planted_cause"):
        v = df[trait].to_numpy(bool)
        out[f"{trait}_share_base"] = float(v.mean())
        out[f"{trait}_share_top_decile"] = float(v[top].mean())
        out[f"{trait}_over_representation"] = (float(v[top].mean() / v.mean()) if v.mean()
                                               else math.nan)
        out[f"{trait}_true_risk_over_representation"] = (
            float(v[true_top].mean() / v.mean()) if v.mean() else math.nan)
    return out


def flag_figures(obs: pd.DataFrame, truth_dir: Path, run_date: date,
                 horizon: int = 90) -> list[dict[str, Any]]:
    """Lift of each ``flag_*`` column (as it stood on ``run_date``) on the truth's future."""
    cust = pd.read_parquet(truth_dir / "customers.parquet")[["customer_id", "churn_date"]]
    df = obs.merge(cust, on="customer_id", how="inner")
    days = (pd.to_datetime(df["churn_date"]) - pd.Timestamp(run_date)).dt.days
    churned = (days > 0) & (days <= horizon)
    df = df[pd.to_datetime(df["churn_date"]).isna() | (days > 0)]
    churned = churned[df.index].to_numpy(bool)
    base = float(churned.mean()) if len(churned) else math.nan
    out = []
    for c in sorted(c for c in df.columns if c.startswith("flag_")):
        on = df[c].fillna(False).to_numpy(bool)
        prec = float(churned[on].mean()) if on.any() else math.nan
        out.append({"flag": c.removeprefix("flag_"), "n_flagged": int(on.sum()),
                    "precision": prec, "lift": prec / base if base else math.nan})
    return out


def feature_ceiling(obs: pd.DataFrame, truth_dir: Path, run_date: date,
                    horizon: int = 90) -> dict[str, float]:
    """How far the observation features *can* go: a Cox fitted on the future itself.

    The run date's observation rows (the features the scores used) are fitted, in sample,
    to what happened in the next ``horizon`` days: an optimistic ceiling for any model
    linear in these features. The same with one planted covariate of the truth added
    shows which cause the warehouse's data carries too little of.
    """
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    from flows.churn.observations import prepare

    prepared = prepare(obs)
    cust = pd.read_parquet(truth_dir / "customers.parquet")
    f = prepared.frame.merge(cust, on="customer_id", how="inner", suffixes=("", "_truth"))
    churn = pd.to_datetime(f["churn_date"])
    rd = pd.Timestamp(run_date)
    f = f[churn.isna() | (churn > rd)].reset_index(drop=True)
    days = (pd.to_datetime(f["churn_date"]) - rd).dt.days.to_numpy(float)
    event = ~np.isnan(days) & (days <= horizon)
    t = np.where(event, days, horizon)
    x = f[prepared.numeric].astype(float)
    x = pd.concat([x, pd.get_dummies(f[prepared.categorical], drop_first=True, dtype=float)],
                  axis=1)
    x = x.loc[:, x.notna().any() & (x.std() > 0)]
    x = x.fillna(x.mean())
    x["log_tenure"] = np.log1p(f["tenure_days"].astype(float))

    def fit(design: pd.DataFrame) -> float:
        d = design.assign(_t=t, _e=event)
        m = CoxPHFitter(penalizer=0.01).fit(d, "_t", "_e")
        return float(concordance_index(t, -m.predict_partial_hazard(d).to_numpy(), event))

    out = {"features_in_sample": fit(x)}
    truth = json.loads((truth_dir / "truth.json").read_text())["hazard_model"]
    for cov in truth.get("betas", {}):
        if cov in f and f"{cov}_truth" not in f:
            out[f"with_true_{cov}"] = fit(x.assign(**{f"true_{cov}": f[cov].astype(float)}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=300)
    ap.add_argument("--future", type=int, default=90)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--start", default="2026-07-01")
    ap.add_argument("--workdir", default=None, help="reuse a generated + backfilled folder")
    ap.add_argument("--rebuild", action="store_true",
                    help="with --workdir: rebuild the observation table (after changing its "
                         "SQL) and the marts after the churn stage")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cxp-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    from flows import churn, pipeline, transform
    from flows.config import load_settings
    from flows.demo import generate
    from flows.warehouse import open_warehouse, stop_embedded

    landing, home = work / "landing", work / "home"
    start = date.fromisoformat(args.start)
    end = start + timedelta(days=args.days - args.future - 1)
    timings: dict[str, float] = {}
    os.environ["CXLOOP_HOME"] = str(home)
    if not (landing / "_truth" / "truth.json").exists():
        t0 = time.perf_counter()
        generate(landing, customers=args.customers, days=args.days, start=start, seed=args.seed)
        timings["generate"] = time.perf_counter() - t0
    if not home.exists():
        t0 = time.perf_counter()
        summary = pipeline.backfill(start=start, end=end, landing=str(landing))
        timings["backfill"] = time.perf_counter() - t0
        assert summary["status"] == "completed", summary
    wh = open_warehouse(home)
    try:
        settings = load_settings(landing=str(landing))
        if args.rebuild:
            t0 = time.perf_counter()
            transform.build(wh, settings, end, select="int_subscription_versions int_churn_observations")
            timings["observations_rebuild"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = churn.run_churn(wh, end, force=True)
        timings["churn_stage"] = time.perf_counter() - t0
        if args.rebuild:
            transform.build(wh, settings, end, select="mart_early_warning_lift")
        scores = wh.read_frame("select customer_id, churn_prob_90 from marts.churn_scores")
        fig = prospective_figures(scores, landing / "_truth", end)
        flags = wh.read_frame(
            "select * from intermediate.int_churn_observations where observation_date = "
            "%(d)s", {"d": end})
        fig["flags_on_the_future"] = flag_figures(flags, landing / "_truth", end)
        fig["feature_ceiling_concordance"] = feature_ceiling(flags, landing / "_truth", end)
        fig["early_warning_lift_mart"] = wh.read_frame(
            "select flag, lift, is_predictive from marts.mart_early_warning_lift "
            "order by flag").to_dict("records")
        bt = res.metrics.get("backtest", {})
        fig["registry_backtest_concordance"] = res.metrics.get("heldout_concordance")
        fig["registry_backtest"] = bt
        fig["note"] = res.note
    finally:
        stop_embedded(home)
    out = {"customers": args.customers, "days": args.days, "backfilled_until": str(end),
           "seed": args.seed, "timings_seconds": timings, "figures": fig}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"churn-prospective-{args.customers}x{args.days}-seed{args.seed}.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    keys = ["concordance", "true_risk_concordance", "tenure_only_concordance",
            "registry_backtest_concordance", "top_decile_vs_true", "calibration_max_gap",
            "goes_silent_over_representation", "price_sensitive_over_representation",
            "feature_ceiling_concordance", "flags_on_the_future", "early_warning_lift_mart"]
    print(json.dumps({k: fig.get(k) for k in keys}, indent=1, default=str))
    print(path)


if __name__ == "__main__":
    main()
