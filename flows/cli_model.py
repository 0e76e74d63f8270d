"""``cxloop model ...``: fit and inspect the churn model (registered on flows.cli.model_app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from flows.cli import ConfigOpt, _open, console, handle_errors, model_app
from flows.errors import CxloopError


def _penalizer(value: str) -> float | None:
    if value == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise CxloopError(f"--penalizer must be 'auto' or a number, not {value!r}") from None


def _split(s: str | None) -> list[str] | None:
    return [c.strip() for c in s.split(",") if c.strip()] if s else None


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def _backtest_c(parameters: object, which: str) -> float | None:
    """Backtest concordance of the model ('model') or a baseline from the registry JSON."""
    bt = ((parameters or {}).get("metrics") or {}).get("backtest") if isinstance(
        parameters, dict) else None
    if not bt:
        return None
    fig = bt.get("model_raw") if which == "model" else (bt.get("baselines") or {}).get(which)
    return (fig or {}).get("concordance")


def _fit_snapshot(snapshot: Path, duration: str, event: str, cohort: str | None,
                  covariates: str | None, exclude: str | None, model: str, penalizer: str,
                  ph: str, km_by: str | None, out: Path | None) -> None:
    import pandas as pd

    from flows import churn

    if not snapshot.exists():
        raise CxloopError(f"snapshot {snapshot} does not exist")
    df = (pd.read_parquet(snapshot) if snapshot.suffix.lower() == ".parquet"
          else pd.read_csv(snapshot))
    cfg = churn.FitConfig(model=model, penalizer=_penalizer(penalizer), ph_action=ph)
    try:
        rep = churn.fit_snapshot(df, duration, event, cohort=cohort, covariates=_split(covariates),
                                 cfg=cfg, exclude=_split(exclude), km_by=_split(km_by))
    except (KeyError, ValueError, SyntaxError) as err:
        raise CxloopError(f"snapshot {snapshot}: {err}") from None
    med = "not reached" if rep.km_median is None else f"{rep.km_median:g}"
    console.print(f"[bold]{snapshot.name}[/]{f' where {cohort}' if cohort else ''}: "
                  f"{rep.n:,} customers, {rep.events:,} churned; Kaplan–Meier median {med}")
    if rep.model is None:
        raise CxloopError(f"no model fitted: {rep.error}")
    m = rep.model
    mt = m.metrics
    console.print(f"model [bold]{m.kind}[/] (penalizer {m.parameters.get('penalizer')}); "
                  f"held-out concordance {mt['heldout_concordance']:.3f}, in-sample "
                  f"{mt['train_concordance']:.3f}; integrated Brier "
                  f"{mt.get('integrated_brier') or float('nan'):.3f}; holdout: "
                  f"{m.parameters.get('holdout')}")
    # Cox coefficients are hazard ratios; an AFT model's are time ratios (> 1: stays longer)
    ph_model = m.kind == "cox"
    label = "hazard ratio" if ph_model else "time ratio"
    t = Table("feature", "coef", label, "95% CI", "p",
              title="effects on the hazard" if ph_model else
              f"effects on the time to churn ({m.kind}: time ratios, > 1 = stays longer)")
    for r in rep.coefficients.itertuples():
        coef = r.coef if ph_model else float(np.log(r.effect_ratio))
        t.add_row(r.feature, f"{coef:+.4f}", f"{r.effect_ratio:.3f}",
                  f"{r.effect_lower:.3f}–{r.effect_upper:.3f}", f"{r.p_value:.3g}")
    console.print(t)
    viol = m.ph_check.get("violating_features", [])
    console.print(f"proportional hazards: {len(viol)} violating ({', '.join(viol) or 'none'}); "
                  f"{m.ph_check.get('action')}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rep.coefficients.to_csv(out / "coefficients.csv", index=False)
        rep.km.to_csv(out / "km_curves.csv", index=False)
        (out / "model.json").write_text(json.dumps(churn._json_safe(
            {"version": m.version, "kind": m.kind, "metrics": mt, "parameters": m.parameters,
             "ph_check": m.ph_check}), indent=1) + "\n")
        paths = churn.plot_km(rep.km, out, time_label=f"{duration}")
        console.print(f"wrote {out}/coefficients.csv, km_curves.csv, model.json and "
                      f"{len(paths)} plot(s)")


@model_app.command("fit")
@handle_errors
def model_fit(
    snapshot: Annotated[Path | None, typer.Option(
        "--snapshot", help="One-row-per-customer CSV/parquet to fit instead of the warehouse.")] = None,
    duration: Annotated[str, typer.Option("--duration", help="Snapshot: tenure column.")] = "tenure",
    event: Annotated[str, typer.Option(
        "--event", help="Snapshot: churn column (Yes/No, 1/0, true/false).")] = "Churn",
    cohort: Annotated[str | None, typer.Option(
        "--cohort", help="Snapshot: pandas query selecting the customers to fit.")] = None,
    covariates: Annotated[str | None, typer.Option(
        "--covariates", help="Snapshot: comma-separated columns to use (default: all).")] = None,
    exclude: Annotated[str | None, typer.Option(
        "--exclude", help="Snapshot: comma-separated columns to leave out.")] = None,
    model: Annotated[str, typer.Option(
        "--model", help="auto (best held-out concordance), cox, weibull_aft or loglogistic_aft.")
    ] = "auto",
    penalizer: Annotated[str, typer.Option(
        "--penalizer", help="'auto' (chosen on held-out data) or a number, e.g. 0.")] = "auto",
    ph: Annotated[str, typer.Option(
        "--ph", help="Proportional-hazards violations: 'stratify' a categorical or 'record'.")
    ] = "stratify",
    km_by: Annotated[str | None, typer.Option(
        "--km-by", help="Snapshot: comma-separated columns for Kaplan–Meier curves.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Snapshot: folder for coefficients, curves, model summary and plots.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Fit the churn model now: on a snapshot file, or refit and rescore the warehouse."""
    if model not in ("auto", "cox", "weibull_aft", "loglogistic_aft"):
        raise CxloopError(f"--model must be auto, cox, weibull_aft or loglogistic_aft, not {model!r}")
    if ph not in ("stratify", "record"):
        raise CxloopError(f"--ph must be stratify or record, not {ph!r}")
    if snapshot is not None:
        _fit_snapshot(snapshot, duration, event, cohort, covariates, exclude, model, penalizer,
                      ph, km_by, out)
        return
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from flows import churn
    from flows.warehouse import run_lock

    s, wh = _open(config)
    run_date = datetime.now(ZoneInfo(s.timezone)).date()
    cfg = churn.FitConfig(model=model, penalizer=_penalizer(penalizer), ph_action=ph)
    reports = Path(s.home) / "reports" / run_date.isoformat()
    with run_lock(wh, s.lock_timeout_seconds, f"model-fit-{run_date}"):
        res = churn.run_churn(wh, run_date, every_days=s.churn.refit_every_days, force=True,
                              min_events=s.churn.min_events, min_concordance=s.churn.min_concordance,
                              reports_dir=reports, cfg=cfg,
                              landmark_cfg=churn.LandmarkConfig.from_settings(s.churn))
    console.print(f"{res.note}; {res.scored:,} customers scored with {res.model_version}")
    if not res.refitted:
        raise CxloopError(f"refit failed: {res.note}")


@model_app.command("show")
@handle_errors
def model_show(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Models to list.")] = 10,
) -> None:
    """List registered models and the latest fit attempts."""
    s, wh = _open(config)
    with wh.transaction() as cur:
        cur.execute("select model_version, status, trained_at, n_rows, n_events, "
                    "heldout_concordance, integrated_brier, calibration_90d, "
                    "ph_check ->> 'action', parameters from ops.model_registry "
                    "order by trained_at desc "
                    "limit %s", (limit,))
        rows = cur.fetchall()
        cur.execute("select attempted_at, run_date, outcome, reason from ops.model_fit_attempts "
                    "order by attempted_at desc limit 5")
        attempts = cur.fetchall()
    t = Table("version", "status", "trained at", "rows", "events", "C backtest",
              "C tenure only", "C previous", "calib 90d", "effects", title="ops.model_registry")
    for r in rows:
        kind = str(r[0]).split("-")[0]
        t.add_row(r[0], r[1], f"{r[2]:%Y-%m-%d %H:%M}", f"{r[3]:,}", f"{r[4]:,}", _fmt(r[5]),
                  _fmt(_backtest_c(r[9], "tenure_only_km")),
                  _fmt(_backtest_c(r[9], "previous_model")), _fmt(r[7]),
                  "hazard ratios" if kind == "cox" else "time ratios")
    console.print(t)
    a = Table("attempted at", "run date", "outcome", "reason", title="latest fit attempts")
    for r in attempts:
        a.add_row(f"{r[0]:%Y-%m-%d %H:%M}", str(r[1]), r[2], r[3] or "")
    console.print(a)
