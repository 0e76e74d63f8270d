"""Formatting batches into the exported tables of each entity (columns, names, e-mails, phones).

Why this exists: the contract's columns and string formats are one concern, separate from
what happened on a day; the faults act on these tables before they are written.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.demo.batches import Batch
from flows.demo.columns import _ascii, _bool, _date, _ids, _int, _money, _take, _take_date, _ts
from flows.demo.params import CANCEL_REASONS, CHANNELS, DAY, PLANS, REGIONS, SEGMENTS
from flows.demo.vocab import CN_GIVEN, CN_SURNAME, EMAIL_DOMAINS, EMAIL_SEPS, EN_FIRST, EN_LAST
from flows.entities import ENTITIES, SURVEY_TYPES


class _TablesMixin:
    """Turns batches into contract tables; mixed into :class:`_Generator`."""

    def table(self, ent: str, b: Batch) -> pa.Table:
        p, cat = self.pop, self.cat
        if ent == "customers":
            c = b["cust"]
            cols = {
                "customer_id": _ids("C", c + 1, 8),
                "full_name": self._names(c),
                "email": self._emails(c),
                "phone": self._phones(c),
                "region": _take(REGIONS, p.region[c]),
                "segment": _take(SEGMENTS, p.segment[c]),
                "plan": _take(PLANS, p.plan[c]),
                "acquisition_channel": _take(CHANNELS, p.acq[c]),
                "marketing_consent": _bool(p.consent[c]),
                "signup_date": _date(self.secs(p.signup_abs[c]) // DAY),
                "updated_at": _ts(b["ts"]),
            }
        elif ent == "subscriptions":
            c = b["cust"]
            churn_ts = self.secs(np.minimum(p.churn_abs[c], 1e7))
            cancelled = churn_ts <= b["ts"]
            end_day = churn_ts // DAY
            # Yearly terms billed monthly: the next anniversary of the start is the renewal.
            start_day = self.secs(p.signup_abs[c]) // DAY
            renew_day = start_day + 365 * ((b["ts"] // DAY - start_day) // 365 + 1)
            cols = {
                "subscription_id": _ids("S", c + 1, 8),
                "customer_id": _ids("C", c + 1, 8),
                "plan": _take(PLANS, p.plan[c]),
                "status": _take(("active", "cancelled"), cancelled.astype(np.int64)),
                "start_date": _date(self.secs(p.signup_abs[c]) // DAY),
                "end_date": _take_date(end_day, cancelled),
                "cancel_reason": _take(CANCEL_REASONS,
                                       np.where(cancelled, p.cancel_reason[c], -1)),
                "monthly_value": _money(p.value_cents[c]),
                "updated_at": _ts(b["ts"]),
                "renewal_date": _take_date(renew_day, ~cancelled),
                "billing_period": _take(("month",), np.zeros(len(c), dtype=np.int64)),
                "quantity": _int(np.ones(len(c), dtype=np.int64)),
            }
        elif ent == "orders":
            cols = {
                "order_id": _ids("O", b["oid"], 9),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "order_date": _date(b["day"] + self.t0 // DAY),
                "amount": _money(b["cents"]),
            }
        elif ent == "interactions":
            cols = {
                "interaction_id": _ids("I", b["iid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "channel": _take(CHANNELS, b["ch"]),
                "occurred_at": _ts(b["ts"]),
                "wait_seconds": _int(b["wait"]),
                "handle_seconds": _int(b["handle"]),
                "resolved": _bool(b["resolved"]),
                "first_contact_resolution": _bool(b["fcr"]),
            }
        elif ent == "invitations":
            iid = _ids("I", np.maximum(b["iid"], 0), 10)
            cols = {
                "invitation_id": _ids("V", b["vid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "survey_type": _take(SURVEY_TYPES, b["stype"]),
                "interaction_id": pc.if_else(pa.array(b["iid"] < 0), pa.scalar(None, pa.string()),
                                             iid),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "sent_at": _ts(b["ts"]),
            }
        elif ent == "responses":
            cols = {
                "response_id": _ids("R", b["rid"], 10),
                "invitation_id": _ids("V", b["vid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "survey_type": _take(SURVEY_TYPES, b["stype"]),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "invited_at": _ts(b["ts"]),
                "responded_at": _ts(b["ts_resp"]),
                "nps": _int(b["nps"], 0),
                "csat": _int(b["csat"], 0),
                "ces": _int(b["ces"], 0),
                "overall_satisfaction": _int(b["os"], 0),
                "likelihood_to_renew": _int(b["ltr"], 0),
                "comment": pa.array(list(b["comment"]), type=pa.string()),
                "comment_language": pa.array(list(b["lang"]), type=pa.string()),
            }
        else:  # item_ratings
            cols = {
                "response_id": _ids("R", b["rid"], 10),
                "customer_id": _ids("C", b["cust"] + 1, 8),
                "item_code": _take(cat.items, b["tp"]),
                "touchpoint_code": _take(cat.codes, b["tp"]),
                "dimension": _take(cat.dimensions, b["tp"]),
                "rating": _int(b["rating"]),
                "responded_at": _ts(b["ts_resp"]),
            }
        names = ENTITIES[ent].column_names
        assert list(cols) == names, (ent, list(cols))
        return pa.Table.from_arrays([cols[k] for k in names], names=names)

    def _names(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        a, b = p.name_a[c].astype(np.int64), p.name_b[c].astype(np.int64)
        # both branches are built for every row (modulo keeps the unused one in range)
        en = pc.binary_join_element_wise(_take(EN_FIRST, a % len(EN_FIRST)),
                                         _take(EN_LAST, b % len(EN_LAST)), " ")
        cn = pc.binary_join_element_wise(_take([s for s, _ in CN_SURNAME], a % len(CN_SURNAME)),
                                         _take([g for g, _ in CN_GIVEN], b % len(CN_GIVEN)), "")
        return pc.if_else(pa.array(p.is_cn[c]), cn, en)

    def _emails(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        ascii_first = [_ascii(x) for x in EN_FIRST]
        ascii_last = [_ascii(x) for x in EN_LAST]
        is_cn = pa.array(p.is_cn[c])
        na, nb = p.name_a[c].astype(np.int64), p.name_b[c].astype(np.int64)
        # Chinese names: given.surname in pinyin; others first.last
        a = pc.if_else(is_cn, _take([g for _, g in CN_GIVEN], nb % len(CN_GIVEN)),
                       _take(ascii_first, na % len(EN_FIRST)))
        b = pc.if_else(is_cn, _take([s for _, s in CN_SURNAME], na % len(CN_SURNAME)),
                       _take(ascii_last, nb % len(EN_LAST)))
        ver = p.email_ver[c].astype(np.int64)
        sep = _take(EMAIL_SEPS, (p.email_sep[c] + ver) % len(EMAIL_SEPS))
        num = (p.email_num[c].astype(np.int64) + 37 * ver) % 1000
        with_num = p.email_has_num[c] | (ver > 0)
        num_s = pc.if_else(pa.array(with_num), pa.array(num).cast(pa.string()), "")
        dom = _take(EMAIL_DOMAINS, (p.email_dom[c] + ver) % len(EMAIL_DOMAINS))
        local = pc.binary_join_element_wise(a, sep, b, num_s, "")
        return pc.binary_join_element_wise(local, dom, "@")

    def _phones(self, c: np.ndarray) -> pa.Array:
        p = self.pop
        area = pa.array(p.phone_area[c].astype(np.int64)).cast(pa.string())
        line = pc.utf8_lpad(pa.array(p.phone_line[c].astype(np.int64)).cast(pa.string()), 4, "0")
        us = pc.binary_join_element_wise("+1-", area, "-555-", line, "")
        cn = pc.binary_join_element_wise("+86-", area, "-5550-", line, "")
        return pc.if_else(pa.array(p.is_cn[c]), cn, us)
