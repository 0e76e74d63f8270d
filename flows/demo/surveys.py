"""Surveys: invitations, responses and item ratings, with the planted rating model.

Why this exists: the driver analysis must recover touchpoint importances and the worse
segment from the ratings; this is where invitations are sent (after contacts, and every
~90 days), who answers (silent customers stop), and how item and outcome ratings are drawn.
"""

from __future__ import annotations

import numpy as np

from flows.demo.batches import Batch, _concat, _take_rows
from flows.demo.params import (
    BILLING_EXPERIENCE_LOADING,
    DAY,
    LTR_BASE,
    LTR_NOISE,
    OS_BASE,
    OS_NOISE,
    P_COMMENT,
    P_INVITE_AFTER_INTERACTION,
    PRICE_SENSITIVE_LTR_DROP,
    PRICE_SENSITIVE_RATING_BUMP,
    RATING_NOISE_SD,
    RELATIONSHIP_EVERY_DAYS,
    SEGMENT_RATING_OFFSET,
    UNRESOLVED_RATING_DROP,
)
from flows.demo.streams import _rng
from flows.demo.vocab import COMMENTS, TP_NAME_ZH


class _SurveysMixin:
    """Draws invitations, responses and item ratings; mixed into :class:`_Generator`."""

    def surveys_for(self, day: int, inter: Batch | None) -> None:
        """Invitations (transactional after contacts, relationship every ~90 days) and the
        answers they get, queued for the days they are sent and answered."""
        p = self.pop
        rng = _rng(self.seed, "survey", day)
        parts: list[Batch] = []
        if inter is not None:
            pick = np.flatnonzero(rng.random(len(inter["iid"])) < P_INVITE_AFTER_INTERACTION)
            sent = inter["t"][pick] + rng.uniform(0.02, 1.0, len(pick))
            ok = sent < p.churn_abs[inter["cust"][pick]]
            pick, sent = pick[ok], sent[ok]
            parts.append({"cust": inter["cust"][pick], "stype": np.zeros(len(pick), np.int8),
                          "iid": inter["iid"][pick], "tp": inter["tp"][pick].astype(np.int8),
                          "unresolved": ~inter["resolved"][pick], "t": sent})
        active = np.flatnonzero((p.signup_abs < day - 30) & (p.churn_abs > day + 1))
        rel = active[(day - p.rel_phase[active]) % RELATIONSHIP_EVERY_DAYS == 0]
        if len(rel):
            parts.append({"cust": rel, "stype": np.ones(len(rel), np.int8),
                          "iid": np.full(len(rel), -1, dtype=np.int64),
                          "tp": np.full(len(rel), -1, dtype=np.int8),
                          "unresolved": np.zeros(len(rel), dtype=bool),
                          "t": day + rng.uniform(9 / 24, 10 / 24, len(rel))})
        inv = _concat(parts)
        if inv is None or len(inv["cust"]) == 0:
            return
        n = len(inv["cust"])
        inv["vid"] = np.arange(self.next_id["invitations"], self.next_id["invitations"] + n)
        self.next_id["invitations"] += n
        inv["ts"] = self.secs(inv["t"])
        self.schedule_with_warts("invitations", inv["ts"], inv,
                                 _rng(self.seed, "warts", 3 * day), late=False)

        # Who answers, and when (0-5 days later, before churning).
        cust = inv["cust"]
        prob = np.where(inv["t"] < p.silent_onset[cust], p.resp_p[cust], 0.0)  # onset=inf
        answered = rng.random(n) < prob
        lag = np.minimum(rng.exponential(0.8, n), 4.99) + 60 / DAY
        t_resp = inv["t"] + lag
        keep = np.flatnonzero(answered & (t_resp < p.churn_abs[cust]))
        if len(keep) == 0:
            return
        r = _take_rows(inv, keep)
        r["t_resp"] = t_resp[keep]
        self._answers(day, r)

    def _answers(self, day: int, r: Batch) -> None:
        """Scores, comments and item ratings that carry the planted structure."""
        p = self.pop
        rng = _rng(self.seed, "ratings", day)
        n = len(r["cust"])
        cust = r["cust"]
        n_tp = len(self.cat.codes)
        # latent item ratings for every touchpoint, then keep what the survey asks
        lat = (self.tp_mean[None, :] + SEGMENT_RATING_OFFSET[p.segment[cust]][:, None]
               + p.general[cust][:, None]
               + PRICE_SENSITIVE_RATING_BUMP * p.price_sensitive[cust][:, None]
               + rng.normal(0, RATING_NOISE_SD, (n, n_tp)))
        lat[:, self.tp["billing"]] += BILLING_EXPERIENCE_LOADING * p.billing_experience[cust]
        trans = r["stype"] == 0
        rows = np.arange(n)
        tp_t = np.where(trans, r["tp"], 0).astype(np.int64)
        lat[rows[trans], tp_t[trans]] -= UNRESOLVED_RATING_DROP * r["unresolved"][trans]
        ratings = np.clip(np.rint(lat), 1, 5).astype(np.int64)
        asked = np.zeros((n, n_tp), dtype=bool)
        asked[rows[trans], tp_t[trans]] = True
        asked[~trans] = p.experienced[cust[~trans]]

        centred = (ratings - self.tp_mean[None, :]) * asked
        os_ = np.clip(np.rint(OS_BASE + centred @ self.w_os + rng.normal(0, OS_NOISE, n)), 1, 10)
        ltr = np.clip(np.rint(LTR_BASE + centred @ self.w_ltr
                              - PRICE_SENSITIVE_LTR_DROP * p.price_sensitive[cust]
                              + rng.normal(0, LTR_NOISE, n)), 1, 5)
        r_tp = ratings[rows, tp_t]
        csat_t = np.clip(np.rint(r_tp + rng.normal(0, 0.5, n)), 1, 5)
        csat_r = np.clip(np.rint(1 + (os_ - 1) * 4 / 9 + rng.normal(0, 0.5, n)), 1, 5)
        ces = np.clip(np.rint(4.6 + 0.8 * (r_tp - 3.5) - 0.8 * r["unresolved"]
                              + rng.normal(0, 0.8, n)), 1, 7)
        nps_t = 7 + 1.2 * (r_tp - 3.5) + 2 * p.general[cust] + rng.normal(0, 1.2, n)
        nps_r = os_ - 0.3 + rng.normal(0, 1.0, n)
        nps = np.clip(np.rint(np.where(trans, nps_t, nps_r)), 0, 10)
        r["nps"] = nps.astype(np.int64)
        r["csat"] = np.where(trans, csat_t, csat_r).astype(np.int64)
        r["ces"] = np.where(trans, ces, -1).astype(np.int64)
        r["os"] = np.where(trans, -1, os_).astype(np.int64)
        r["ltr"] = np.where(trans, -1, ltr).astype(np.int64)
        # sentiment of the comment follows the main score of the survey
        score = np.where(trans, (r["csat"] - 1) / 4, (os_ - 1) / 9)
        senti = np.where(score >= 0.75, 2, np.where(score <= 0.35, 0, 1))
        rc = _rng(self.seed, "comments", day)
        has = rc.random(n) < P_COMMENT + 0.1 * (senti == 0)
        zh = p.comment_zh[cust]
        pick = rc.random(n)
        comment = np.full(n, None, dtype=object)
        lang = np.full(n, None, dtype=object)
        for i in np.flatnonzero(has):
            lg = "zh" if zh[i] else "en"
            s = ("neg", "mid", "pos")[senti[i]]
            tmpl = COMMENTS[(lg, s)]
            text = tmpl[int(pick[i] * len(tmpl))]
            if "{tp}" in text:
                j = int(tp_t[i]) if trans[i] else int(rc.integers(0, n_tp))
                code = self.cat.codes[j]
                name = TP_NAME_ZH[code] if lg == "zh" else self.cat.names[j].lower()
                text = text.replace("{tp}", name)
            comment[i], lang[i] = text, lg
        r["comment"], r["lang"] = comment, lang
        r["rid"] = np.arange(self.next_id["responses"], self.next_id["responses"] + n)
        self.next_id["responses"] += n
        r["ts_resp"] = self.secs(r["t_resp"])
        resp = {k: r[k] for k in ("rid", "vid", "cust", "stype", "tp", "ts", "ts_resp", "nps",
                                  "csat", "ces", "os", "ltr", "comment", "lang")}
        self.schedule_with_warts("responses", r["ts_resp"], resp,
                                 _rng(self.seed, "warts", 3 * day + 1), late=False)
        ri, ti = np.nonzero(asked)
        items = {"rid": r["rid"][ri], "cust": cust[ri], "tp": ti.astype(np.int8),
                 "rating": ratings[ri, ti], "ts_resp": r["ts_resp"][ri]}
        self.schedule("item_ratings", self.day_of(items["ts_resp"]), items)
