"""The utility profile's rows as its source systems export them.

One place turns generator rows (account index, touchpoint index, epoch seconds) into
the utility's export: its headers (:data:`utility_params.HEADERS`, the same table the
configuration's ``rename`` is built from), its labels (``Residential``, ``Live``,
``Y``/``N``, ``Yes``/``No``) and dd/mm/yyyy dates. Formatting uses Arrow kernels, as
the default demo does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.demo import (
    DAY,
    EMAIL_DOMAINS,
    EN_FIRST,
    EN_LAST,
    Batch,
    _ascii,
    _ids,
    _int,
    _money,
    _take,
)
from flows.demo_profiles import utility_params as P
from flows.demo_profiles.utility_params import (
    CANCEL_REASONS,
    CHANNELS,
    CODES,
    HEADERS,
    TOUCHPOINTS,
)
from flows.demo_profiles.utility_population import Population


def _secs(t0: int, t_abs: np.ndarray) -> np.ndarray:
    return t0 + np.floor(np.asarray(t_abs) * DAY).astype(np.int64)


def export_table(ent: str, b: Batch, p: Population, t0: int) -> pa.Table:
    """Rows of ``b`` as the source system exports them: its headers, labels, formats."""
    c = b["cust"]
    acct = _ids("A", c + 1, 7)
    if ent == "customers":
        cols = {"customer_id": acct, "full_name": _names(p, c), "email": _emails(p, c),
                "phone": pc.binary_join_element_wise(
                    "07700 900", pc.utf8_lpad(_int(p.phone[c]), 3, "0"), ""),
                "region": _take(P.REGIONS, p.region[c]),
                "segment": _take(P.SEGMENT_LABELS, p.segment[c]),
                "plan": _take(P.PLANS, p.plan[c]),
                "acquisition_channel": _take(CHANNELS, p.acq[c]),
                "marketing_consent": _take(P.Y_N, p.consent[c].astype(int)),
                "signup_date": _dmy(_secs(t0, p.signup_abs[c]) // DAY),
                "updated_at": _dmy_hm(b["ts"]),
                "dwelling_type": _take(P.DWELLINGS, p.dwelling[c]),
                "meter_type": _take(P.METERS, p.meter[c])}
    elif ent == "subscriptions":
        churn_ts = _secs(t0, np.minimum(p.churn_abs[c], 1e7))
        closed = churn_ts <= b["ts"]
        cols = {"subscription_id": _ids("AG", c + 1, 7), "customer_id": acct,
                "plan": _take(P.PLANS, p.plan[c]),
                "status": _take(P.STATUS_LABELS, closed.astype(int)),
                "start_date": _dmy(_secs(t0, p.signup_abs[c]) // DAY),
                "end_date": pc.if_else(pa.array(closed), _dmy(churn_ts // DAY),
                                       pa.scalar(None, pa.string())),
                "cancel_reason": _take(CANCEL_REASONS, np.where(closed,
                                                                p.cancel_reason[c], -1)),
                "monthly_value": _money(p.value_cents[c]), "updated_at": _dmy_hm(b["ts"])}
    elif ent == "orders":
        cols = {"order_id": _ids("CH", b["oid"], 8), "customer_id": acct,
                "order_date": _dmy(b["day"] + t0 // DAY),
                "amount": _money(b["cents"]),
                "charge_type": _take(P.CHARGE_TYPES, b["kind"])}
    elif ent == "interactions":
        cols = {"interaction_id": _ids("K", b["iid"], 9), "customer_id": acct,
                "touchpoint_code": _take(CODES, b["tp"]),
                "channel": _take(CHANNELS, b["ch"]), "occurred_at": _dmy_hm(b["ts"]),
                "wait_seconds": _int(b["wait"]), "handle_seconds": _int(b["handle"]),
                "resolved": _take(P.Y_N, b["resolved"].astype(int)),
                "first_contact_resolution": _take(P.Y_N, b["fcr"].astype(int))}
    elif ent == "invitations":
        cols = {"invitation_id": _ids("SV", b["vid"], 9), "customer_id": acct,
                "survey_type": _take(P.SURVEY_LABELS, b["stype"]),
                "interaction_id": _nullable_ids("K", b["iid"], 9),
                "touchpoint_code": _take(CODES, b["tp"]), "sent_at": _dmy_hm(b["ts"])}
    elif ent == "responses":
        cols = {"response_id": _ids("SR", b["rid"], 9),
                "invitation_id": _ids("SV", b["vid"], 9), "customer_id": acct,
                "survey_type": _take(P.SURVEY_LABELS, b["stype"]),
                "touchpoint_code": _take(CODES, b["tp"]), "invited_at": _dmy_hm(b["ts"]),
                "responded_at": _dmy_hm(b["ts_resp"]), "nps": _int(b["nps"]),
                "csat": _int(b["csat"]), "ces": _int(b["ces"], 0),
                "overall_satisfaction": _take(P.YES_NO, b["sat"]),
                "likelihood_to_renew": _int(b["stay"], 0),
                "comment": pa.array(list(b["comment"]), pa.string()),
                "comment_language": pc.if_else(
                    pa.array([x is not None for x in b["comment"]]), "en",
                    pa.scalar(None, pa.string()))}
    else:  # item_ratings
        cols = {"response_id": _ids("SR", b["rid"], 9), "customer_id": acct,
                "item_code": _take([TOUCHPOINTS[x]["item"] for x in CODES], b["tp"]),
                "touchpoint_code": _take(CODES, b["tp"]),
                "dimension": _take([TOUCHPOINTS[x]["dim"] for x in CODES], b["tp"]),
                "rating": _int(b["rating"]), "responded_at": _dmy_hm(b["ts_resp"])}
    assert list(cols) == list(HEADERS[ent]), (ent, list(cols))
    return pa.Table.from_arrays(list(cols.values()), names=list(HEADERS[ent].values()))


def _names(p: Population, c: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(_take(EN_FIRST, p.first[c]),
                                       _take(EN_LAST, p.last[c]), " ")


def _emails(p: Population, c: np.ndarray) -> pa.Array:
    first = _take([_ascii(x) for x in EN_FIRST], p.first[c])
    last = _take([_ascii(x) for x in EN_LAST], p.last[c])
    local = pc.binary_join_element_wise(first, last, _int(c % 97), ".")
    return pc.binary_join_element_wise(local, _take(EMAIL_DOMAINS, p.email_dom[c]),
                                       "@")


def _dmy(epoch_days: np.ndarray) -> pa.Array:
    d = pa.array(np.asarray(epoch_days, dtype=np.int32), type=pa.date32())
    return pc.strftime(d, format=P.DATE_FORMAT)


def _dmy_hm(epoch_secs: np.ndarray) -> pa.Array:
    t = pa.array(np.asarray(epoch_secs, dtype=np.int64), type=pa.timestamp("s"))
    return pc.strftime(t, format=P.TIME_FORMAT)


def _nullable_ids(prefix: str, nums: np.ndarray, width: int) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(nums) < 0), pa.scalar(None, pa.string()),
                      _ids(prefix, np.maximum(nums, 0), width))
