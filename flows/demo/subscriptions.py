"""Subscriptions, customers' attribute changes and orders: the CRM side of each day.

Why this exists: signups, plan changes, cancellations (the churn times of the population)
and add-on orders make up the CRM extracts; they are simulated per day here.
"""

from __future__ import annotations

import numpy as np

from flows.demo.batches import Batch, _concat, _dedupe
from flows.demo.params import DAY, ORDER_RATE, P_DEVICE_AT_SIGNUP, PLAN_PRICE, UPDATE_RATE
from flows.demo.streams import _rng


class _CrmMixin:
    """Draws the day's CRM changes and orders; mixed into :class:`_Generator`."""

    def orders_for(self, day: int) -> None:
        p = self.pop
        rng = _rng(self.seed, "orders", day)
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        dev = new[rng.random(len(new)) < P_DEVICE_AT_SIGNUP]
        addon = np.zeros(0, dtype=np.int64)
        if len(active):
            k = rng.poisson(len(active) * ORDER_RATE)
            addon = np.sort(active[rng.integers(0, len(active), k)])
        cust = np.concatenate([dev, addon]).astype(np.int64)
        n = len(cust)
        if n == 0:
            return
        amount = np.concatenate([np.exp(rng.normal(np.log(250), 0.5, len(dev))),
                                 np.exp(rng.normal(np.log(25), 0.7, len(addon)))])
        oid = np.arange(self.next_id["orders"], self.next_id["orders"] + n)
        self.next_id["orders"] += n
        b = {"oid": oid, "cust": cust, "day": np.full(n, day, dtype=np.int64),
             "cents": np.maximum(np.round(amount * 100), 100).astype(np.int64)}
        ts = self.t0 + day * DAY + np.zeros(n, dtype=np.int64)
        self.schedule_with_warts("orders", ts, b, _rng(self.seed, "warts", 3 * day + 2),
                                 late=False)

    def crm_changes_for(self, day: int) -> tuple[Batch, Batch]:
        """Customers and subscriptions rows of the day (full base on day 1)."""
        p = self.pop
        rng = _rng(self.seed, "updates", day)
        cust_parts: list[Batch] = []
        sub_parts: list[Batch] = []
        if day == 0:
            base = np.arange(p.n_base)
            cust_parts.append({"cust": base, "ts": self.secs(p.base_updated[base])})
            sub_parts.append({"cust": base, "ts": self.secs(p.signup_abs[base])})
        new = np.arange(self.signup_bounds[day], self.signup_bounds[day + 1])
        ts_new = self.secs(p.signup_abs[new])
        cust_parts.append({"cust": new, "ts": ts_new})
        sub_parts.append({"cust": new, "ts": ts_new})
        # attribute changes of active customers
        active = np.flatnonzero((p.signup_abs < day) & (p.churn_abs > day + 1))
        if len(active):
            who = np.unique(active[rng.integers(0, len(active),
                                                rng.poisson(len(active) * UPDATE_RATE))])
            kind = rng.choice(4, len(who), p=[0.25, 0.15, 0.35, 0.25])
            ts = self.secs(day + rng.uniform(8 / 24, 20 / 24, len(who)))
            # plan: basic <-> plus only, so plan_premium (a covariate) never changes
            plan_chg = who[(kind == 0) & (p.plan[who] < 2)]
            old = p.plan[plan_chg].astype(np.int64)
            p.plan[plan_chg] = 1 - old
            p.value_cents[plan_chg] = np.round(
                p.value_cents[plan_chg] * PLAN_PRICE[1 - old] / PLAN_PRICE[old]).astype(np.int64)
            moved = who[kind == 1]
            p.region[moved] = (p.region[moved] + rng.integers(1, 4, len(moved))) % 4
            flip = who[kind == 2]
            p.consent[flip] = ~p.consent[flip]
            mail = who[kind == 3]
            p.email_ver[mail] += 1
            cust_parts.append({"cust": who, "ts": ts})
            sub_parts.append({"cust": plan_chg, "ts": ts[np.isin(who, plan_chg)]})
        # cancellations today
        lo, hi = self.churn_day_bounds[day], self.churn_day_bounds[day + 1]
        gone = self.churn_sorted[lo:hi]
        sub_parts.append({"cust": gone, "ts": self.secs(p.churn_abs[gone])})
        return _dedupe(_concat(cust_parts)), _dedupe(_concat(sub_parts))
