"""Truth files: the planted model and per-customer truth, written to ``_truth/``.

Why this exists: validation of the whole pipeline needs "right" written down beside the
extracts - the churn coefficients with what each covariate means and how to derive it from
the data, the touchpoint importances, and every customer's covariates and churn time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.demo.columns import _ids, _take
from flows.demo.generator import _Generator
from flows.demo.params import (
    BETAS,
    COVARIATES,
    EPOCH,
    LOG_VALUE_MEAN,
    LOG_VALUE_SD,
    LTR_BASE,
    LTR_NOISE,
    OS_BASE,
    OS_NOISE,
    P_COMMENT,
    P_INVITE_AFTER_INTERACTION,
    P_LATE,
    P_REEXPORT,
    PLANS,
    PRICE_SENSITIVE_LTR_DROP,
    PRICE_SENSITIVE_RATING_BUMP,
    RELATIONSHIP_EVERY_DAYS,
    RESPONSE_P_MEAN,
    RESPONSE_P_SEGMENT,
    SEGMENT_RATING_OFFSET,
    SEGMENTS,
    SILENT_RESPONSE_P,
    UPDATE_RATE,
    WEIBULL_K,
    WEIBULL_LAM,
)

COVARIATE_DOC = {
    "plan_premium": ("binary", "P=0.20 at signup",
                     "customers.plan / subscriptions.plan == 'premium' (plan changes in the "
                     "window are basic<->plus only, so it stays constant)"),
    "segment_smb": ("binary", "P=0.30", "customers.segment == 'smb'"),
    "log_monthly_value": ("continuous", "standardised ln(monthly value at signup)",
                          "(ln(subscriptions.monthly_value at signup) - mean) / sd with the "
                          "mean and sd below; later plan changes rescale the value"),
    "billing_experience": ("latent", "N(0,1)",
                           "billing item ratings (billing_clarity), CSAT/NPS of billing "
                           "transactional surveys: rating latent += 0.8 * billing_experience"),
    "unresolved_propensity": ("latent", "N(0,1)",
                              "interactions.resolved = false with logit = touchpoint base + "
                              "0.9 * unresolved_propensity; also more support calls and "
                              "field repairs"),
    "goes_silent": ("binary", "P=0.10",
                    "answers 85% of surveys until an onset date (30-120 days before "
                    "churning or mid-window), then none"),
    "price_sensitive": ("binary", "P=0.12",
                        "mercenaries: ratings +0.4 (satisfied), likelihood_to_renew -1, "
                        "cancel_reason mostly price/competitor"),
}


def _write_truth(g: _Generator) -> tuple[Path, Path]:
    p, out = g.pop, g.out / "_truth"
    out.mkdir(parents=True, exist_ok=True)
    horizon = float(g.days)
    tenure_end = horizon - p.signup_abs
    event = p.t_churn < tenure_end
    start_days = (g.start - EPOCH).days
    signup_day = g.day_of(g.secs(p.signup_abs)) + start_days
    churn_day = np.floor(p.churn_abs).astype(np.int64) + start_days
    silent = np.isfinite(p.silent_onset)
    onset_day = np.floor(np.where(silent, p.silent_onset, 0)).astype(np.int64) + start_days
    cols: dict[str, pa.Array] = {
        "customer_id": _ids("C", np.arange(p.n) + 1, 8),
        **{k: pa.array(getattr(p, k).astype(np.int8) if COVARIATE_DOC[k][0] == "binary"
                       else getattr(p, k)) for k in COVARIATES},
        "linear_predictor": pa.array(p.lp),
        "risk_score": pa.array(np.exp(p.lp)),
        "signup_date": pa.array(signup_day.astype(np.int32), type=pa.date32()),
        "entry_days": pa.array(np.maximum(-p.signup_abs, 0.0)),
        "churn_time_days": pa.array(p.t_churn),
        "duration_days": pa.array(np.where(event, p.t_churn, tenure_end)),
        "event": pa.array(event.astype(np.int8)),
        "churn_date": pa.array(np.minimum(churn_day, 2**31 - 1).astype(np.int32),
                               type=pa.date32(), mask=~event),
        "segment": _take(SEGMENTS, p.segment),
        "plan_at_signup": _take(PLANS, p.plan0),
        "monthly_value_at_signup": pa.array(p.value0_cents / 100.0),
        "silence_onset_date": pa.array(onset_day.astype(np.int32), type=pa.date32(),
                                       mask=~silent),
        "in_base_at_start": pa.array(np.arange(p.n) < p.n_base),
    }
    cust_path = out / "customers.parquet"
    pq.write_table(pa.Table.from_pydict(cols), cust_path)

    base = p.n_base
    base_churn_1y = None
    if base:
        t_start = -p.signup_abs[:base]
        # P(churn within a year | alive at start), from the model, averaged over the base
        lam, k = WEIBULL_LAM, WEIBULL_K
        cum = ((t_start + 365) / lam) ** k - (t_start / lam) ** k
        base_churn_1y = float(np.mean(1 - np.exp(-cum * np.exp(p.lp[:base]))))
    imp = g.w_os
    sat = g.tp_mean
    quad = {}
    for j, code in enumerate(g.cat.codes):
        hi_imp, hi_sat = imp[j] >= np.median(imp), sat[j] >= np.median(sat)
        quad[code] = ("fix_first" if hi_imp and not hi_sat else
                      "possible_overkill" if hi_sat and not hi_imp else
                      "keep_up" if hi_imp else "low_priority")
    truth = {
        "schema_version": 1,
        "generator": "flows.demo",
        "seed": g.seed,
        "window": {"start": g.start.isoformat(), "end": g.summary.end.isoformat(),
                   "days": g.days, "censored_at_days": g.days},
        "customers": {"base_at_start": p.n_base, "new_in_window": p.n - p.n_base,
                      "total": p.n, "events_in_window": int(event.sum())},
        "hazard_model": {
            "form": "h(t|x) = (k/lam) * (t/lam)^(k-1) * exp(x . beta)",
            "time_unit": "days since signup",
            "baseline": {"distribution": "weibull", "k": WEIBULL_K, "lam": WEIBULL_LAM},
            "covariates": [
                {"name": k, "beta": BETAS[k], "type": COVARIATE_DOC[k][0],
                 "distribution": COVARIATE_DOC[k][1], "expressed_as": COVARIATE_DOC[k][2]}
                for k in COVARIATES
            ],
            "betas": BETAS,
            "log_monthly_value_standardisation": {"mean": LOG_VALUE_MEAN, "sd": LOG_VALUE_SD},
            "left_truncation": "customers in the base at window start survived to it; "
                               "entry_days = tenure at start (use entry_col in a Cox fit)",
            "censoring": "administrative, at the end of the window",
            "expected_base_churn_within_1y": base_churn_1y,
            "churn_in_extracts": "subscriptions re-exported with status=cancelled, end_date, "
                                 "cancel_reason on the churn date; no contacts after it",
        },
        "touchpoints": {
            code: {"importance_weight_overall_satisfaction": float(g.w_os[j]),
                   "importance_weight_likelihood_to_renew": float(g.w_ltr[j]),
                   "latent_mean_rating": float(g.tp_mean[j]),
                   "expected_quadrant": quad[code]}
            for j, code in enumerate(g.cat.codes)
        },
        "planted": {
            "fix_first": ["billing"],
            "possible_overkill": ["store_visit"],
            "worse_segment": {"segment": "smb", "rating_offset": float(SEGMENT_RATING_OFFSET[1])},
            "segment_rating_offsets": dict(zip(SEGMENTS, SEGMENT_RATING_OFFSET.tolist(),
                                               strict=True)),
            "mercenaries": {"covariate": "price_sensitive", "rating_bump":
                            PRICE_SENSITIVE_RATING_BUMP,
                            "likelihood_to_renew_drop": PRICE_SENSITIVE_LTR_DROP},
            "overall_satisfaction": f"round({OS_BASE} + sum_t w_t * (rating_t - mean_t) "
                                    f"+ N(0,{OS_NOISE})), clipped 1-10, over the items rated",
            "likelihood_to_renew": f"round({LTR_BASE} + sum_t w'_t * (rating_t - mean_t) "
                                   f"- {PRICE_SENSITIVE_LTR_DROP} * price_sensitive "
                                   f"+ N(0,{LTR_NOISE})), clipped 1-5",
            "item_rating": "round(mean_t + segment offset + general(N(0,0.3)) + 0.4 * "
                           "price_sensitive [+ 0.8 * billing_experience for billing] "
                           "[- 0.9 if the rated contact was unresolved] + N(0,0.7)), 1-5",
        },
        "survey": {"p_invite_after_interaction": P_INVITE_AFTER_INTERACTION,
                   "relationship_every_days": RELATIONSHIP_EVERY_DAYS,
                   "response_p_mean": RESPONSE_P_MEAN,
                   "response_p_segment_multiplier": dict(zip(SEGMENTS,
                                                             RESPONSE_P_SEGMENT.tolist(),
                                                             strict=True)),
                   "goes_silent_response_p_before_onset": SILENT_RESPONSE_P,
                   "p_comment": P_COMMENT},
        "warts": {"late_interactions": P_LATE, "late_days": [1, 2], "reexported": P_REEXPORT,
                  "attribute_updates_per_customer_year": UPDATE_RATE * 365},
        "faults": {"rate": g.faults.rate,
                   "manifest": "_faults/manifest.csv" if g.faults.rate > 0 else None},
        "files": {"customers": "_truth/customers.parquet"},
    }
    path = out / "truth.json"
    path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, cust_path
