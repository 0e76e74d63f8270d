"""Interactions: the day's contacts per customer and touchpoint, with waits and resolution.

Why this exists: contacts carry the planted causes the marts must find - the billing
contacts after bills, renewal contacts, more support and field repairs for the unresolved-
prone, onboarding steps after signup - so their simulation is kept on its own.
"""

from __future__ import annotations

import numpy as np

from flows.demo.batches import Batch, _concat
from flows.demo.params import (
    BILLING_CONTACT_P,
    CHANNELS,
    DAY,
    RENEWAL_CONTACTS_PER_ANNIVERSARY,
    TP_PARAMS,
    UNRESOLVED_LOADING,
)
from flows.demo.streams import _rng


class _InteractionsMixin:
    """Draws the day's interactions; mixed into :class:`_Generator`."""

    def interactions_for(self, day: int) -> Batch | None:
        """Usage contacts of customers active all day, plus scheduled onboarding steps."""
        p = self.pop
        rng = _rng(self.seed, "usage", day)
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        custs: list[np.ndarray] = []
        tps: list[np.ndarray] = []
        times: list[np.ndarray] = []
        gaps: list[np.ndarray] = []  # onboarding steps: real wait since the previous step
        na = len(active)

        def add(c: np.ndarray, tp: int, lo: float = 7 / 24, hi: float = 22 / 24) -> None:
            custs.append(c)
            tps.append(np.full(len(c), tp, dtype=np.int8))
            times.append(day + rng.uniform(lo, hi, len(c)))
            gaps.append(np.full(len(c), -1.0))

        if na:
            for code in ("app_usage", "support_call", "store_visit", "field_repair"):
                rate = TP_PARAMS[code]["rate"]
                if code in ("support_call", "field_repair"):
                    # customers with unresolved problems call and need repairs more often
                    cand = active[rng.integers(0, na, rng.poisson(na * rate * 3.5))]
                    w = np.exp(0.4 * p.unresolved_propensity[cand] - 1.2)
                    cand = cand[rng.random(len(cand)) < np.minimum(w, 1.0)]
                else:
                    cand = active[rng.integers(0, na, rng.poisson(na * rate))]
                lo, hi = (0.0, 1.0) if code == "app_usage" else (7 / 24, 22 / 24)
                add(np.sort(cand), self.tp[code], lo, hi)
            bill = active[(day - p.bill_phase[active]) % 30 == 0]
            add(bill[rng.random(len(bill)) < BILLING_CONTACT_P], self.tp["billing"])
            tenure_mod = np.floor(day - p.signup_abs[active]) % 365
            near = active[tenure_mod >= 335]
            add(near[rng.random(len(near)) < RENEWAL_CONTACTS_PER_ANNIVERSARY / 30],
                self.tp["renewal"])
        # new signups today: apply online now, then approval -> installation -> call
        lo, hi = self.signup_bounds[day], self.signup_bounds[day + 1]
        new = np.arange(lo, hi)
        if len(new):
            t = p.signup_abs[new]
            custs.append(new)
            tps.append(np.full(len(new), self.tp["apply_online"], dtype=np.int8))
            times.append(t)
            gaps.append(np.full(len(new), -1.0))
            ro = _rng(self.seed, "onboard", day)
            steps = []
            for code in ("approval", "installation"):  # wait = time since previous step
                j = self.tp[code]
                gap = np.exp(np.log(self.wait_med[j]) + self.wait_s[j] * ro.normal(0, 1, len(new)))
                t = t + np.round(gap) / DAY
                steps.append((j, t, np.round(gap)))
            t = t + ro.uniform(1, 10, len(new))
            steps.append((self.tp["onboarding_call"], t, np.full(len(new), -1.0)))
            for j, tt, gap in steps:
                ok = tt < p.churn_abs[new]
                self.schedule("_events", np.floor(tt[ok]).astype(np.int64),
                              {"cust": new[ok], "tp": np.full(ok.sum(), j, dtype=np.int8),
                               "t": tt[ok], "gap": gap[ok]})
        ev = self.pending["_events"].pop(day, [])
        if ev:
            e = _concat(ev)
            assert e is not None
            custs.append(e["cust"])
            tps.append(e["tp"])
            times.append(e["t"])
            gaps.append(e["gap"])
        if not custs:
            return None
        cust = np.concatenate(custs).astype(np.int64)
        if len(cust) == 0:
            return None
        tp = np.concatenate(tps)
        t = np.concatenate(times)
        gap = np.concatenate(gaps)
        ts = self.secs(t)
        order = np.lexsort((cust, ts))
        cust, tp, t, ts, gap = cust[order], tp[order], t[order], ts[order], gap[order]
        n = len(cust)
        ra = _rng(self.seed, "usage", 10_000 + day)
        ch = (ra.random(n)[:, None] > self.chan_cum[tp]).sum(1).clip(0, len(CHANNELS) - 1)
        wait = np.exp(np.log(self.wait_med[tp]) + self.wait_s[tp] * ra.normal(0, 1, n))
        wait = np.where(gap >= 0, gap, wait)  # onboarding chain: the real gap
        handle = np.exp(np.log(self.handle_med[tp]) + self.handle_s[tp] * ra.normal(0, 1, n))
        logit = self.unres_base[tp] + UNRESOLVED_LOADING * p.unresolved_propensity[cust]
        resolved = ra.random(n) >= 1 / (1 + np.exp(-logit))
        fcr = resolved & (ra.random(n) < self.fcr_p[tp])
        ids = np.arange(self.next_id["interactions"], self.next_id["interactions"] + n)
        self.next_id["interactions"] += n
        p.experienced[cust, tp] = True
        return {"iid": ids, "cust": cust, "tp": tp, "ch": ch.astype(np.int8), "ts": ts,
                "t": t, "wait": np.round(wait).astype(np.int64),
                "handle": np.maximum(np.round(handle), 5).astype(np.int64),
                "resolved": resolved, "fcr": fcr}
