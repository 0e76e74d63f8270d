"""The "utility" demo profile: an electricity and water supplier's nightly exports.

Why a second profile: the default demo matches the extract contract by construction, so
it cannot show whether cxloop works for a company whose exports do not. This one writes
what a utility's billing system and survey tool would: their own headers (``Account
Number``, ``Customer Class``, ``Tariff``), labels instead of codes (``Residential``,
``Live``, ``Y``/``N``, ``Yes``/``No``), dd/mm/yyyy dates, item scores on 0-10 with 0 for
"not applicable", and extra columns (``dwelling_type``, ``meter_type``). Beside the
extracts it writes the configuration that maps them (``_config/``) and the truth it
planted (``_truth/``).

Modules: ``utility_params`` (the planted world, stated once), ``utility_population``
(accounts drawn up front), this one (the day-by-day events), ``utility_export`` (rows as
the source systems write them), ``utility_faults`` and ``utility_reference`` (config,
reference files, truth).

The machinery is the default demo's (:mod:`flows.demo`): seeded per purpose and day,
Arrow-formatted CSV, the same summary and fault-manifest format. The simulation is
simpler (a Bernoulli draw per active customer, day and touchpoint) because the profile is
for checking correctness at small sizes, not for the 1M-customer benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from flows.demo import (
    DAY,
    EPOCH,
    Batch,
    GenerationSummary,
    _concat,
    _dedupe,
    _take_rows,
    _write_table,
)
from flows.demo_profiles import utility_faults, utility_reference
from flows.demo_profiles import utility_params as P
from flows.demo_profiles.utility_export import export_table
from flows.demo_profiles.utility_params import (
    CHANNELS,
    CODES,
    HEADERS,
    PLAN_PRICE,
    TOUCHPOINTS,
)
from flows.demo_profiles.utility_population import TP, Population, draw_traits, sigmoid, stream
from flows.entities import ENTITIES

__all__ = ["Population", "UtilityGenerator", "draw_traits", "generate"]

HANDLE_MEDIAN = {"move_in": 600.0, "field_visit": 3600.0}
HANDLE_DEFAULT = 360.0
P_REEXPORT = 0.01


class UtilityGenerator:
    """One run: ``run`` streams the window day by day into the landing folder."""

    def __init__(self, out: Path, customers: int, days: int, start: date, seed: int,
                 faults: float) -> None:
        self.out, self.days, self.start, self.seed = out, days, start, seed
        self.t0 = (start - EPOCH).days * DAY
        self.pop = Population(seed, customers, days)
        self.faults = utility_faults.RowFaults(seed, faults)
        self.pending: dict[str, dict[int, list[Batch]]] = {e: {} for e in [*ENTITIES, "_ev"]}
        self.next_id = dict.fromkeys(("interactions", "invitations", "responses", "orders"), 1)
        self.mean = np.array([TOUCHPOINTS[c]["mean"] for c in CODES])
        self.w_sat = np.array([TOUCHPOINTS[c]["w_sat"] for c in CODES])
        self.w_stay = np.array([TOUCHPOINTS[c]["w_stay"] for c in CODES])
        chan = np.array([TOUCHPOINTS[c]["channel"] for c in CODES], dtype=float)
        self.chan_cum = np.cumsum(chan / chan.sum(1, keepdims=True), axis=1)
        self.summary = GenerationSummary(
            out=out, start=start, end=start + timedelta(days=days - 1), days=days, fmt="csv",
            customers_base=customers, customers_total=self.pop.n,
            rows=dict.fromkeys(ENTITIES, 0))
        c = self.pop.churn_abs
        inside = np.flatnonzero((c >= 0) & (c < days))
        self.churn_sorted = inside[np.argsort(c[inside], kind="stable")]
        self.churn_bounds = np.searchsorted(c[self.churn_sorted], np.arange(days + 1))
        self.signup_bounds = np.concatenate([[customers], customers + np.cumsum(
            self.pop.per_day)])

    def secs(self, t_abs: np.ndarray) -> np.ndarray:
        return self.t0 + np.floor(np.asarray(t_abs) * DAY).astype(np.int64)

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        return (np.asarray(ts) - self.t0) // DAY

    def schedule(self, ent: str, export_day: np.ndarray, b: Batch) -> None:
        for d in np.unique(export_day[export_day < self.days]):
            self.pending[ent].setdefault(int(d), []).append(
                _take_rows(b, np.flatnonzero(export_day == d)))

    # --- CRM -------------------------------------------------------------------------
    def crm_for(self, day: int) -> tuple[Batch | None, Batch | None]:
        p, rng = self.pop, stream(self.seed, "updates", day)
        cust: list[Batch] = []
        subs: list[Batch] = []
        if day == 0:
            base = np.arange(p.n_base)
            cust.append({"cust": base, "ts": self.secs(p.base_updated[base])})
            subs.append({"cust": base, "ts": self.secs(p.signup_abs[base])})
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        for parts in (cust, subs):
            parts.append({"cust": new, "ts": self.secs(p.signup_abs[new])})
        act = p.active(day)
        who = act[rng.random(len(act)) < P.UPDATE_RATE]
        kind = rng.integers(0, 3, len(who))
        ts = self.secs(day + rng.uniform(8 / 24, 20 / 24, len(who)))
        switch = (kind == 0) & np.isin(p.plan[who], (1, 2))  # variable <-> green only
        sw = who[switch]
        old = p.plan[sw].astype(int)
        p.plan[sw] = 3 - old
        p.value_cents[sw] = np.round(p.value_cents[sw] * PLAN_PRICE[3 - old] / PLAN_PRICE[old])
        p.consent[who[kind == 1]] = ~p.consent[who[kind == 1]]
        p.meter[who[(kind == 2) & (p.meter[who] == 1)]] = 0  # standard -> smart upgrade
        cust.append({"cust": who, "ts": ts})
        subs.append({"cust": sw, "ts": ts[switch]})
        gone = self.churn_sorted[self.churn_bounds[day]:self.churn_bounds[day + 1]]
        subs.append({"cust": gone, "ts": self.secs(p.churn_abs[gone])})
        return _dedupe(_concat(cust)), _dedupe(_concat(subs))

    def orders_for(self, day: int) -> None:
        p, rng = self.pop, stream(self.seed, "orders", day)
        act = p.active(day)
        who = act[rng.random(len(act)) < P.ORDER_RATE * (1 + 2 * p.payment_difficulty[act])]
        if len(who) == 0:
            return
        late = (p.payment_difficulty[who] > 0) & (rng.random(len(who)) < 0.7)
        kind = np.where(late, 2, rng.integers(0, 2, len(who)))
        cents = np.round(P.CHARGE_PRICE[kind] * 100).astype(np.int64)
        oid = np.arange(self.next_id["orders"], self.next_id["orders"] + len(who))
        self.next_id["orders"] += len(who)
        self.schedule("orders", np.full(len(who), day), {
            "oid": oid, "cust": who, "day": np.full(len(who), day), "cents": cents,
            "kind": kind})

    # --- contacts --------------------------------------------------------------------
    def interactions_for(self, day: int) -> Batch | None:
        p, rng = self.pop, stream(self.seed, "usage", day)
        act = p.active(day)
        n = len(act)
        bill_day = (day - p.bill_phase[act]) % P.BILL_EVERY_DAYS == 0
        read_day = ((day - p.read_phase[act]) % P.READING_EVERY_DAYS == 0) & (p.meter[act] == 1)
        prob = {
            "online_account": np.full(n, P.RATES["online_account"]),
            "outage_report": P.RATES["outage_report"] * np.exp(
                0.6 * p.outage_exposure[act] - 0.18),
            "tariff_offers": P.RATES["tariff_offers"] * np.exp(
                0.8 * p.contact_intensity[act] - 0.32),
            "payment_plan": np.where(p.payment_difficulty[act] > 0,
                                     P.RATES["payment_plan_difficulty"],
                                     P.RATES["payment_plan_other"]),
            "field_visit": np.full(n, P.RATES["meter_fault"]),
            "billing": bill_day * sigmoid(-2.0 + 0.9 * p.billing_error_prone[act]),
            "meter_reading": read_day * 0.6,
        }
        custs, tps, times, waits = [], [], [], []
        for code, pr in prob.items():
            c = act[rng.random(n) < pr]
            custs.append(c)
            tps.append(np.full(len(c), TP[code]))
            times.append(day + rng.uniform(7 / 24, 21 / 24, len(c)))
            waits.append(np.full(len(c), -1.0))
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        custs.append(new)
        tps.append(np.full(len(new), TP["move_in"]))
        times.append(p.signup_abs[new])
        waits.append(np.round(np.exp(np.log(TOUCHPOINTS["move_in"]["wait"])
                                     + 0.6 * rng.normal(0, 1, len(new)))))
        for e in self.pending["_ev"].pop(day, []):  # field visits booked after outages
            custs.append(e["cust"])
            tps.append(e["tp"])
            times.append(e["t"])
            waits.append(e["wait"])
        cust = np.concatenate(custs).astype(np.int64)
        if len(cust) == 0:
            return None
        tp, t, wait = np.concatenate(tps), np.concatenate(times), np.concatenate(waits)
        ts = self.secs(t)
        o = np.lexsort((cust, ts))
        cust, tp, t, ts, wait = cust[o], tp[o], t[o], ts[o], wait[o]
        m = len(cust)
        ch = (rng.random(m)[:, None] > self.chan_cum[tp]).sum(1).clip(0, len(CHANNELS) - 1)
        med = np.array([TOUCHPOINTS[c]["wait"] for c in CODES], dtype=float)[tp]
        wait = np.where(wait >= 0, wait, np.round(np.exp(np.log(med) + 0.8 * rng.normal(
            0, 1, m))))
        hmed = np.array([HANDLE_MEDIAN.get(c, HANDLE_DEFAULT) for c in CODES])[tp]
        handle = np.maximum(np.round(np.exp(np.log(hmed) + 0.6 * rng.normal(0, 1, m))), 5)
        trait = np.where(tp == TP["billing"], p.billing_error_prone[cust],
                         np.where(np.isin(tp, (TP["outage_report"], TP["field_visit"])),
                                  p.outage_exposure[cust], 0.0))
        unres = np.array([TOUCHPOINTS[c]["unres"] for c in CODES])[tp] + 0.8 * trait
        resolved = rng.random(m) >= sigmoid(unres)
        fcr = resolved & (rng.random(m) < 0.85)
        out_ = np.flatnonzero(tp == TP["outage_report"])
        visit = out_[rng.random(len(out_)) < P.P_FIELD_AFTER_OUTAGE]
        tv = t[visit] + rng.uniform(1, 3, len(visit))
        ok = tv < p.churn_abs[cust[visit]]
        self.schedule("_ev", np.floor(tv[ok]).astype(np.int64), {
            "cust": cust[visit][ok], "tp": np.full(ok.sum(), TP["field_visit"]), "t": tv[ok],
            "wait": np.round((tv[ok] - t[visit][ok]) * DAY)})
        iid = np.arange(self.next_id["interactions"], self.next_id["interactions"] + m)
        self.next_id["interactions"] += m
        p.experienced[cust, tp] = True
        b = {"iid": iid, "cust": cust, "tp": tp, "ch": ch, "ts": ts, "t": t,
             "wait": wait.astype(np.int64), "handle": handle.astype(np.int64),
             "resolved": resolved, "fcr": fcr}
        row = {k: v for k, v in b.items() if k != "t"}
        self.schedule("interactions", np.full(m, day), row)
        again = np.flatnonzero(rng.random(m) < P_REEXPORT)  # re-sent unchanged next day
        self.schedule("interactions", np.full(len(again), day + 1), _take_rows(row, again))
        return b

    # --- surveys ---------------------------------------------------------------------
    def surveys_for(self, day: int, inter: Batch | None) -> None:
        p, rng = self.pop, stream(self.seed, "survey", day)
        parts: list[Batch] = []
        if inter is not None:
            pick = np.flatnonzero(rng.random(len(inter["iid"])) < P.P_INVITE_AFTER_CONTACT)
            sent = inter["t"][pick] + rng.uniform(0.02, 1.0, len(pick))
            ok = sent < p.churn_abs[inter["cust"][pick]]
            pick, sent = pick[ok], sent[ok]
            parts.append({"cust": inter["cust"][pick], "stype": np.zeros(len(pick), np.int8),
                          "iid": inter["iid"][pick], "tp": inter["tp"][pick],
                          "unresolved": ~inter["resolved"][pick], "t": sent})
        act = p.active(day)
        pulse = act[((day - p.pulse_phase[act]) % P.PULSE_EVERY_DAYS == 0)
                    & (day - p.signup_abs[act] > 30)]
        parts.append({"cust": pulse, "stype": np.ones(len(pulse), np.int8),
                      "iid": np.full(len(pulse), -1), "tp": np.full(len(pulse), -1),
                      "unresolved": np.zeros(len(pulse), bool),
                      "t": day + rng.uniform(9 / 24, 10 / 24, len(pulse))})
        inv = _concat(parts)
        n = len(inv["cust"])
        if n == 0:
            return
        inv["vid"] = np.arange(self.next_id["invitations"], self.next_id["invitations"] + n)
        self.next_id["invitations"] += n
        inv["ts"] = self.secs(inv["t"])
        self.schedule("invitations", self.day_of(inv["ts"]), inv)
        t_resp = inv["t"] + np.minimum(rng.exponential(0.8, n), 4.99) + 60 / DAY
        keep = np.flatnonzero((rng.random(n) < p.resp_p[inv["cust"]])
                              & (t_resp < p.churn_abs[inv["cust"]]))
        if len(keep):
            r = _take_rows(inv, keep)
            r["ts_resp"] = self.secs(t_resp[keep])
            self._answers(day, r)

    def _answers(self, day: int, r: Batch) -> None:
        """Scores and item ratings that carry the planted drivers."""
        p, rng = self.pop, stream(self.seed, "ratings", day)
        cust, n, k = r["cust"], len(r["cust"]), len(CODES)
        lat = (self.mean[None, :] + P.SEGMENT_RATING_OFFSET[p.segment[cust]][:, None]
               + p.general[cust][:, None] + rng.normal(0, P.RATING_NOISE_SD, (n, k)))
        lat[:, TP["billing"]] += P.BILLING_LOADING * p.billing_error_prone[cust]
        lat[:, TP["outage_report"]] += P.OUTAGE_LOADING * p.outage_exposure[cust]
        lat[:, TP["tariff_offers"]] += P.OFFER_LOADING * p.contact_intensity[cust]
        trans, rows = r["stype"] == 0, np.arange(n)
        tp_t = np.where(trans, r["tp"], 0).astype(np.int64)
        lat[rows[trans], tp_t[trans]] -= P.UNRESOLVED_DROP * r["unresolved"][trans]
        lo, hi = P.ITEM_SCALE
        ratings = np.clip(np.rint(lat), lo, hi).astype(np.int64)
        asked = np.zeros((n, k), dtype=bool)
        asked[rows[trans], tp_t[trans]] = True
        asked[~trans] = p.experienced[cust[~trans]]
        not_met = ~asked & ~trans[:, None] & (rng.random((n, k)) < P.P_NOT_APPLICABLE)
        centred = (ratings - self.mean[None, :]) * asked
        sat = rng.random(n) < sigmoid(P.SAT_BASE + centred @ self.w_sat)
        stay = np.clip(np.rint(P.STAY_BASE + centred @ self.w_stay
                               - P.PRICE_SHOPPER_STAY_DROP * p.price_shopper[cust]
                               - 0.8 * p.payment_difficulty[cust]
                               + rng.normal(0, P.STAY_NOISE, n)), *P.STAY_SCALE)
        r_tp = ratings[rows, tp_t]
        nps = np.where(trans, 6 + 0.6 * (r_tp - 6), 3.5 + 4.5 * sat + p.general[cust])
        csat = np.where(trans, 1 + (r_tp - 1) * 4 / 9, 2.2 + 2 * sat)
        ces = 4.5 + 0.35 * (r_tp - 6) - 0.8 * r["unresolved"]
        r["nps"] = np.clip(np.rint(nps + rng.normal(0, 1.5, n)), *P.NPS_SCALE).astype(int)
        r["csat"] = np.clip(np.rint(csat + rng.normal(0, 0.6, n)), *P.CSAT_SCALE).astype(int)
        r["ces"] = np.where(trans, np.clip(np.rint(ces + rng.normal(0, 0.8, n)),
                                           *P.CES_SCALE), -1).astype(int)
        r["sat"] = np.where(trans, -1, sat).astype(int)
        r["stay"] = np.where(trans, -1, stay).astype(int)
        senti = np.where(r["csat"] >= 4, "pos", np.where(r["csat"] <= 2, "neg", "mid"))
        has = rng.random(n) < P.P_COMMENT
        pick = rng.random(n)
        r["comment"] = np.array([P.COMMENTS[s][int(u * len(P.COMMENTS[s]))] if h else None
                                 for s, u, h in zip(senti, pick, has, strict=True)],
                                dtype=object)
        r["rid"] = np.arange(self.next_id["responses"], self.next_id["responses"] + n)
        self.next_id["responses"] += n
        self.schedule("responses", self.day_of(r["ts_resp"]), r)
        scored = asked | not_met
        ri, ti = np.nonzero(scored)
        items = {"rid": r["rid"][ri], "cust": cust[ri], "tp": ti, "ts_resp": r["ts_resp"][ri],
                 "rating": np.where(asked[ri, ti], ratings[ri, ti], P.ITEM_NOT_APPLICABLE)}
        self.schedule("item_ratings", self.day_of(items["ts_resp"]), items)

    # --- run -------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None) -> GenerationSummary:
        sort_keys = {"orders": ("day", "oid"), "interactions": ("ts", "iid"),
                     "invitations": ("ts", "vid"), "responses": ("ts_resp", "rid"),
                     "item_ratings": ("ts_resp", "rid", "tp"), "customers": ("ts", "cust"),
                     "subscriptions": ("ts", "cust")}
        for day in range(self.days):
            customers, subs = self.crm_for(day)
            self.orders_for(day)
            self.surveys_for(day, self.interactions_for(day))
            crm = {"customers": customers, "subscriptions": subs}
            for ent in ENTITIES:
                b = crm[ent] if ent in crm else _concat(self.pending[ent].pop(day, []))
                if b is not None and len(b["cust"]):
                    b = _take_rows(b, np.lexsort([b[k] for k in reversed(sort_keys[ent])]))
                self.write(day, ent, b)
            if progress is not None:
                progress(day + 1, self.days)
        return self.summary

    def write(self, day: int, ent: str, b: Batch | None) -> None:
        extract = self.start + timedelta(days=day)
        d = self.out / ENTITIES[ent].source / ent / extract.isoformat()
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{P.EXPORT_NAMES[ent]}_{extract.strftime('%Y%m%d')}.csv"
        rel = path.relative_to(self.out).as_posix()
        if b is None or len(b["cust"]) == 0:
            table = pa.Table.from_arrays([pa.array([], pa.string()) for _ in HEADERS[ent]],
                                         names=list(HEADERS[ent].values()))
        else:
            table = export_table(ent, b, self.pop, self.t0)
            table = self.faults.apply(ent, day, table, rel, self._is_update(ent, day, b))
        self.summary.rows[ent] += table.num_rows
        self.summary.files.append(rel)
        _write_table(table, path, "csv")

    def _is_update(self, ent: str, day: int, b: Batch) -> np.ndarray:
        """Rows re-exporting an account loaded on an earlier day (safe to break)."""
        if ent != "customers":
            return np.ones(len(b["cust"]), dtype=bool)
        if day == 0:  # the full base: a lost row would be a lost account
            return np.zeros(len(b["cust"]), dtype=bool)
        return self.pop.signup_abs[b["cust"]] < day  # moved in before today

def generate(out: Path, customers: int = 800, days: int = 60, start: date = date(2026, 7, 1),
             seed: int = 7, fmt: str = "csv", faults: float = 0.0,
             progress: Callable[[int, int], None] | None = None) -> GenerationSummary:
    """Write the utility's exports for ``days`` days into ``out``, with ``_config/`` (the
    cxloop.yml and reference files that map them) and ``_truth/`` (what was planted).

    ``faults`` > 0 breaks that share of rows on purpose (values outside the configured
    domain or scale, empty keys), listed in ``_faults/manifest.csv``. CSV only: the point
    of the profile is headers and formats that need the column mapping.
    """
    if fmt != "csv":
        raise ValueError(f"the utility profile writes csv only, not {fmt!r}")
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if not 0.0 <= faults < 1.0:
        raise ValueError("faults is a fraction of rows in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = UtilityGenerator(out, customers, days, start, seed, faults)
    summary = g.run(progress)
    summary.truth_path, summary.truth_customers_path = utility_reference.write_truth(g)
    utility_reference.write_config(out)
    summary.manifest_path = g.faults.write_manifest(out)
    summary.n_faults = len(g.faults.manifest)
    return summary
