"""What the utility profile writes beside its extracts: ``_config/`` and ``_truth/``.

``_config/`` is a working cxloop configuration for the extracts: ``cxloop.yml`` (domain,
goals, column mapping per source and entity) and the three reference files in the format
of ``dbt_project/seeds/*.csv``. Its relative paths resolve against the file, so
``landing: ..`` finds the extracts; copy the folder anywhere and set ``landing`` to the
extract folder. Every value is derived from :mod:`utility_params` - the same constants
the generator used - so the mapping cannot describe headers the files do not have.

``_truth/`` holds what was planted: ``truth.json`` (drivers of the binary goal with the
one negative driver, the churn model and its causes, the domain raw must hold) and
``customers.parquet`` (per-account covariates and true risk).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from flows.demo import EPOCH, _ids, _take
from flows.demo_profiles import utility_params as P
from flows.entities import ENTITIES

if TYPE_CHECKING:
    from flows.demo_profiles.utility import UtilityGenerator

CONFIG_DIR = "_config"
CATALOGUE_FIELDS = (
    "touchpoint_code", "touchpoint_name", "journey_stage", "stage_order", "default_channel",
    "experience_dimension", "owner_team", "is_key_touchpoint", "kpi_name", "kpi_description",
    "kpi_higher_is_better", "kpi_expectation", "kpi_benchmark", "csat_expectation",
    "csat_benchmark", "nps_expectation", "nps_benchmark", "ces_expectation", "ces_benchmark")
ITEM_FIELDS = ("item_code", "touchpoint_code", "experience_dimension", "item_text")
ROUTING_FIELDS = ("touchpoint_code", "region", "segment", "owner_team", "owner_person",
                  "escalation_owner", "is_fallback")
SURVEY_BENCHMARKS = ("3.5", "4.5", "0", "50", "4.5", "6.0")  # csat, nps, ces: expect, bench


def _csv_text(fields: tuple[str, ...], rows: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    w.writerows(rows)
    return buf.getvalue()


def reference_files() -> dict[str, str]:
    """File name -> CSV text of the touchpoint catalogue, survey items, owner routing."""
    tps = P.TOUCHPOINTS
    catalogue = [
        (code, t["name"], t["stage"], i + 1, t["default_channel"], t["dim"], t["owner"][0],
         t["key"], t["kpi"], t["kpi_text"], t["kpi_hib"], t["kpi_exp"], t["kpi_bench"],
         *SURVEY_BENCHMARKS)
        for i, (code, t) in enumerate(tps.items())]
    items = [(t["item"], code, t["dim"], t["text"]) for code, t in tps.items()]
    routing: list[tuple] = [
        ("outage_report", "highland", "*", "network_ops", "lars.berg", "head.of.network",
         "false"),
        ("billing", "*", "small_business", "business_billing", "sofia.rossi",
         "head.of.finance", "false"),
    ]
    routing += [(code, "*", "*", *t["owner"], "false") for code, t in tps.items()]
    routing += [
        ("customer", "*", "small_business", "business_accounts", "david.kim",
         "head.of.retention", "false"),
        ("customer", "*", "*", "retention_desk", "hana.sato", "head.of.retention", "false"),
        ("*", "*", "*", "cx_office", "cx.duty.manager", "head.of.cx", "true"),
    ]
    return {"touchpoint_catalogue.csv": _csv_text(CATALOGUE_FIELDS, catalogue),
            "survey_items.csv": _csv_text(ITEM_FIELDS, items),
            "owner_routing.csv": _csv_text(ROUTING_FIELDS, routing)}


def mapping() -> dict[str, dict[str, dict]]:
    """``sources.<source>.mapping``: source header -> contract column, values, formats."""
    out: dict[str, dict[str, dict]] = {}
    for ent, headers in P.HEADERS.items():
        e = ENTITIES[ent]
        contract = set(e.column_names)
        m: dict[str, dict] = {
            "rename": {h: c for c, h in headers.items() if c in contract and h != c}}
        if ent in P.VALUE_MAPS:
            m["values"] = P.VALUE_MAPS[ent]
        formats = {c.name: (P.DATE_FORMAT if c.pg_type == "date" else P.TIME_FORMAT)
                   for c in e.columns if c.pg_type in ("date", "timestamptz")
                   and c.name in headers}
        if formats:
            m["formats"] = formats
        if ent == "item_ratings":
            m["not_applicable"] = {"rating": [P.ITEM_NOT_APPLICABLE]}
        out.setdefault(e.source, {})[ent] = m
    return out


def config() -> dict:
    """The profile's ``cxloop.yml`` as a mapping (keys as agreed in coord/SPEC.md)."""
    cats = {"customers.region": list(P.REGIONS), "customers.segment": list(P.SEGMENTS),
            "customers.plan": list(P.PLANS), "customers.acquisition_channel": list(P.CHANNELS),
            "subscriptions.plan": list(P.PLANS), "subscriptions.status": list(P.STATUSES),
            "subscriptions.cancel_reason": list(P.CANCEL_REASONS),
            "interactions.channel": list(P.CHANNELS), "responses.comment_language": ["en"]}
    scales = {"responses.nps": list(P.NPS_SCALE), "responses.csat": list(P.CSAT_SCALE),
              "responses.ces": list(P.CES_SCALE), "responses.overall_satisfaction": [0, 1],
              "responses.likelihood_to_renew": list(P.STAY_SCALE),
              "item_ratings.rating": list(P.ITEM_SCALE)}
    return {
        "landing": "..",
        "timezone": "Europe/London",
        "reference": {k.removesuffix(".csv"): k for k in reference_files()},
        "domain": {"categories": cats, "scales": scales,
                   "experience_dimensions": list(P.EXPERIENCE_DIMENSIONS),
                   "segment_by": ["segment", "attributes.meter_type"]},
        "goals": {P.GOAL: {"column": "overall_satisfaction", "kind": "binary"},
                  P.STAY_GOAL: {"column": "likelihood_to_renew", "kind": "numeric",
                                "range": list(P.STAY_SCALE), "top_box": [6, 7]}},
        "subscriptions": {"active_statuses": ["active"]},
        "sources": {src: {"kind": "files", "encoding": "utf-8", "mapping": m}
                    for src, m in mapping().items()},
    }


CONFIG_HEADER = """\
# cxloop configuration for the "utility" demo profile (`cxloop demo generate --profile
# utility`): an electricity and water supplier whose exports use their own headers
# (Account Number, Customer Class, Tariff), labels (Residential, Live, Y/N, Yes/No),
# dd/mm/yyyy dates and item scores on 0-10 where 0 means "not applicable".
# Relative paths resolve against this file: `landing: ..` is the folder the profile wrote.
# Copied elsewhere, set `landing:` to that folder. Written by flows/demo_profiles.
# YAML reads unquoted Yes/No/Y/N as booleans: labels are quoted below on purpose.
"""


class _Dumper(yaml.SafeDumper):
    """Lists of values on one line (``[1, 10]``), mappings as blocks: reads like a hand-
    written cxloop.yml. PyYAML quotes strings YAML would read otherwise ('Yes', 'true')."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=True))


def write_config(out: Path) -> Path:
    """``<out>/_config/``: cxloop.yml and the reference files it names."""
    d = out / CONFIG_DIR
    d.mkdir(parents=True, exist_ok=True)
    for name, text in reference_files().items():
        (d / name).write_text(text, encoding="utf-8")
    body = yaml.dump(config(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    path = d / "cxloop.yml"
    path.write_text(CONFIG_HEADER + body, encoding="utf-8")
    return path


def _quadrants() -> dict[str, str]:
    """The demo's median rule over the positive drivers; a negative effect is no driver."""
    pos = {c: t for c, t in P.TOUCHPOINTS.items() if t["w_sat"] > 0}
    w_cut = float(np.median([t["w_sat"] for t in pos.values()]))
    m_cut = float(np.median([t["mean"] for t in pos.values()]))
    out = {}
    for code, t in P.TOUCHPOINTS.items():
        hi_w, hi_m = t["w_sat"] >= w_cut, t["mean"] >= m_cut
        out[code] = ("negative_effect" if t["w_sat"] < 0 else
                     "fix_first" if hi_w and not hi_m else
                     "possible_overkill" if hi_m and not hi_w else
                     "keep_up" if hi_w else "low_priority")
    return out


def write_truth(g: UtilityGenerator) -> tuple[Path, Path]:
    """``_truth/truth.json`` and ``_truth/customers.parquet`` for the run ``g``."""
    p, out = g.pop, g.out / "_truth"
    out.mkdir(parents=True, exist_ok=True)
    start_days = (g.start - EPOCH).days
    horizon = float(g.days)
    tenure_end = horizon - p.signup_abs
    event = p.t_churn < tenure_end
    k, lam = P.WEIBULL_K, P.WEIBULL_LAM
    alive_t = np.maximum(tenure_end, 0.0)
    cum90 = ((alive_t + 90) / lam) ** k - (alive_t / lam) ** k
    p90 = np.where(event, np.nan, 1 - np.exp(-cum90 * np.exp(p.lp)))
    churn_day = np.floor(np.minimum(p.churn_abs, 1e7)).astype(np.int64) + start_days
    signup_day = np.floor(p.signup_abs).astype(np.int64) + start_days
    cols = {
        "customer_id": _ids("A", np.arange(p.n) + 1, 7),
        **{c: pa.array(getattr(p, c).astype(np.int8) if P.COVARIATE_DOC[c][0] == "binary"
                       else getattr(p, c)) for c in P.COVARIATES},
        "linear_predictor": pa.array(p.lp),
        "risk_score": pa.array(np.exp(p.lp)),
        "p_churn_90d_after_window": pa.array(p90, mask=event),
        "signup_date": pa.array(signup_day.astype(np.int32), type=pa.date32()),
        "entry_days": pa.array(np.maximum(-p.signup_abs, 0.0)),
        "churn_time_days": pa.array(p.t_churn),
        "duration_days": pa.array(np.where(event, p.t_churn, tenure_end)),
        "event": pa.array(event.astype(np.int8)),
        "churn_date": pa.array(churn_day.astype(np.int32), type=pa.date32(), mask=~event),
        "cancel_reason": _take(P.CANCEL_REASONS, np.where(event, p.cancel_reason, -1)),
        "segment": _take(P.SEGMENTS, p.segment),
        "plan_at_signup": _take(P.PLANS, p.plan0),
        "monthly_value_at_signup": pa.array(p.value0_cents / 100.0),
        "in_base_at_start": pa.array(np.arange(p.n) < p.n_base),
    }
    cust_path = out / "customers.parquet"
    pq.write_table(pa.Table.from_pydict(cols), cust_path)
    base = p.n_base
    t0 = -p.signup_abs[:base]
    cum = ((t0 + 365) / lam) ** k - (t0 / lam) ** k
    quad = _quadrants()
    truth = {
        "schema_version": 1,
        "generator": "flows.demo_profiles.utility",
        "profile": P.PROFILE,
        "seed": g.seed,
        "window": {"start": g.start.isoformat(), "end": g.summary.end.isoformat(),
                   "days": g.days},
        "customers": {"base_at_start": base, "new_in_window": p.n - base, "total": p.n,
                      "events_in_window": int(event.sum())},
        "domain": {"segments": list(P.SEGMENTS), "plans": list(P.PLANS),
                   "regions": list(P.REGIONS), "channels": list(P.CHANNELS),
                   "segment_labels_in_export": dict(zip(P.SEGMENT_LABELS, P.SEGMENTS,
                                                        strict=True)),
                   "attributes": {"dwelling_type": list(P.DWELLINGS),
                                  "meter_type": list(P.METERS)}},
        "drivers": {
            "goal": P.GOAL, "goal_column": "overall_satisfaction", "kind": "binary",
            "export": "'Satisfied?' = Yes/No on pulse (relationship) surveys",
            "model": f"P(satisfied) = logistic({P.SAT_BASE} + sum_t w_t * (rating_t - "
                     "mean_t)) over the items the customer met (rated 1-10)",
            "top_drivers": list(P.TOP_DRIVERS),
            "negative_driver": P.NEGATIVE_DRIVER,
            "negative_driver_why": "customers contacted often about offers rate them as "
                                   "informative and are less satisfied (contact fatigue)",
            "items": {t["item"]: {"touchpoint_code": code, "weight_log_odds": t["w_sat"],
                                  "weight_likelihood_to_stay": t["w_stay"],
                                  "effect_sign": "negative" if t["w_sat"] < 0 else "positive",
                                  "latent_mean_rating": t["mean"],
                                  "expected_quadrant": quad[code]}
                      for code, t in P.TOUCHPOINTS.items()},
            "quadrant_rule": "median split of the positive weights and latent means",
            "item_rating": f"round(mean_t + segment offset + N(0,{P.GENERAL_SD}) general "
                           f"+ trait loading + N(0,{P.RATING_NOISE_SD})), 1-10; "
                           f"{P.ITEM_NOT_APPLICABLE} = not applicable (met never: "
                           f"P={P.P_NOT_APPLICABLE}, else no row)",
            "likelihood_to_stay": f"round({P.STAY_BASE} + sum_t w'_t (rating_t - mean_t) - "
                                  f"{P.PRICE_SHOPPER_STAY_DROP} price_shopper - 0.8 "
                                  f"payment_difficulty + N(0,{P.STAY_NOISE})), 1-7",
        },
        "planted": {"worse_segment": {"segment": "small_business", "rating_offset":
                                      float(P.SEGMENT_RATING_OFFSET[1])},
                    "fix_first": ["outage_report", "billing"],
                    "possible_overkill": ["online_account"]},
        "hazard_model": {
            "form": "h(t|x) = (k/lam) * (t/lam)^(k-1) * exp(x . beta)",
            "time_unit": "days since supply start",
            "baseline": {"distribution": "weibull", "k": k, "lam": lam},
            "betas": P.BETAS,
            "covariates": [{"name": c, "beta": P.BETAS[c], "type": P.COVARIATE_DOC[c][0],
                            "distribution": P.COVARIATE_DOC[c][1],
                            "expressed_as": P.COVARIATE_DOC[c][2]} for c in P.COVARIATES],
            "left_truncation": "accounts in the base at window start survived to it; "
                               "entry_days = tenure at start",
            "censoring": "administrative, at the end of the window",
            "expected_base_churn_within_1y": float(np.mean(1 - np.exp(
                -cum * np.exp(p.lp[:base])))) if base else None,
        },
        "churn_causes": {
            "raise_risk": sorted((c for c in P.COVARIATES if P.BETAS[c] > 0),
                                 key=lambda c: -P.BETAS[c]),
            "lower_risk": [c for c in P.COVARIATES if P.BETAS[c] < 0],
            "cancel_reason_follows_cause": {"price_shopper": "price",
                                            "billing_error_prone": "billing",
                                            "outage_exposure": "reliability"},
            "hazard_ratio": {c: math.exp(b) for c, b in P.BETAS.items()},
        },
        "faults": {"rate": g.faults.rate, "rows": len(g.faults.manifest),
                   "manifest": "_faults/manifest.csv" if g.faults.rate > 0 else None},
        "files": {"customers": "_truth/customers.parquet",
                  "config": f"{CONFIG_DIR}/cxloop.yml"},
    }
    path = out / "truth.json"
    path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return path, cust_path
