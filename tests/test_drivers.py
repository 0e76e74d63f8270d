"""Relative weights recover known driver importances; signs, binary goals and the bootstrap
flip share behave as stated on frames where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.config import Goal, QuadrantSettings
from flows.drivers import (
    FIX_FIRST,
    KEEP_UP,
    NEGATIVE,
    fit_with_bootstrap,
    importance_table,
    place,
    relative_weights,
)

WIDE = Goal(column="overall_satisfaction", range=(-100, 100))


def _synthetic(n: int = 4000, seed: int = 3):
    rng = np.random.default_rng(seed)
    common = rng.normal(size=n)  # halo: ratings move together
    x = pd.DataFrame({f"i{k}": 0.6 * common + rng.normal(size=n) for k in range(4)})
    y = 1.0 * x["i0"] + 0.5 * x["i1"] + 0.1 * x["i2"] + 0.0 * x["i3"] + rng.normal(size=n)
    return x, y


def _long(x: pd.DataFrame, y: pd.Series, goal_column: str = "overall_satisfaction"):
    rows = []
    for rid in range(len(x)):
        for k, item in enumerate(x.columns):
            rows.append({"response_id": rid, "segment": "smb" if rid % 2 else "consumer",
                         "item_code": item, "touchpoint_code": f"t{k}",
                         "rating": x.iloc[rid, k], goal_column: y.iloc[rid]})
    return pd.DataFrame(rows)


def test_weights_sum_to_r_squared_and_rank_true_drivers():
    x, y = _synthetic()
    raw, beta, r2 = relative_weights(x, y)
    ols_r2 = 1 - np.var(y - np.linalg.lstsq(np.c_[np.ones(len(x)), x], y, rcond=None)[0] @
                        np.c_[np.ones(len(x)), x].T) / np.var(y)
    assert abs(raw.sum() - r2) < 1e-9
    assert abs(r2 - ols_r2) < 1e-3
    assert list(np.argsort(-raw)) == [0, 1, 2, 3]
    assert (raw >= 0).all()
    assert beta[0] > beta[1] > beta[2]


def test_importance_table_has_intervals_per_goal_and_segment():
    x, y = _synthetic(1200)
    t = importance_table(_long(x, y), {"goal_a": WIDE},
                         QuadrantSettings(bootstrap_samples=50))
    assert set(t["segment"]) == {"all", "smb", "consumer"}
    assert set(t.loc[t.segment == "all", "segment_by"]) == {"all"}
    assert set(t.loc[t.segment != "all", "segment_by"]) == {"segment"}
    for _, g in t.groupby(["goal", "segment"]):
        assert abs(g["importance"].sum() - 1) < 1e-9
    top = t[(t.goal == "goal_a") & (t.segment == "all")].set_index("item_code")
    assert top.loc["i0", "importance_low"] > top.loc["i3", "importance_high"]
    assert (top["importance_low"] <= top["importance"]).all()
    assert (top["importance"] <= top["importance_high"]).all()
    assert (top["mean_rating_low"] <= top["mean_rating"]).all()
    assert (top["mean_rating"] <= top["mean_rating_high"]).all()


def test_a_binary_goal_drives_the_computation_and_other_values_are_ignored():
    x, latent = _synthetic(3000, seed=8)
    y = (latent > 0).astype(int)
    y.iloc[:200] = 7  # not an answer of a 0/1 goal: left out, not read as "very yes"
    goal = Goal(column="likelihood_to_renew", kind="binary")
    assert goal.range == (0, 1) and goal.top_box == [1]
    t = importance_table(_long(x, y, "likelihood_to_renew"), {"renewed": goal},
                         QuadrantSettings(bootstrap_samples=30))
    top = t[t.segment == "all"].set_index("item_code")
    assert list(top["importance"].sort_values(ascending=False).index[:3]) == ["i0", "i1", "i2"]
    assert (top.loc[["i0", "i1"], "effect_sign"] == 1).all()
    # 200 rows with a 7 were dropped from every item's count
    assert top["n"].max() == 2800


def test_negative_weight_is_signed_and_never_fix_first():
    rng = np.random.default_rng(5)
    n = 3000
    x = pd.DataFrame({"good": rng.normal(size=n), "bad": rng.normal(size=n),
                      "weak": rng.normal(size=n)})
    y = 1.0 * x["good"] - 0.6 * x["bad"] + 0.05 * x["weak"] + rng.normal(size=n)
    t = fit_with_bootstrap(x, y, QuadrantSettings(bootstrap_samples=30),
                           np.random.default_rng(1)).set_index("item_code")
    assert t.loc["bad", "effect_sign"] == -1 and t.loc["bad", "std_beta"] < 0
    assert t.loc["bad", "importance"] > t.loc["weak", "importance"]  # a share is unsigned
    # important and rated low, but a negative effect: its own label, never fix_first
    labels = place(np.array([0.6, 0.4]), np.array([2.0, 2.0]), np.array([True, False]), 0.3, 3.0)
    assert list(labels) == [FIX_FIRST, NEGATIVE]


def test_bootstrap_flip_share_is_half_at_the_cut_and_zero_far_from_it():
    """Importance target 0: every item is important, so only the rating axis decides.
    'edge' has its mean rating exactly on the rating target: a resample puts it above or
    below about equally often. 'far' sits two standard deviations of the mean away."""
    rng = np.random.default_rng(21)
    n = 400
    edge = rng.normal(size=n)
    edge = edge - edge.mean() + 3.0
    far = rng.normal(size=n)
    far = far - far.mean() + 4.5
    x = pd.DataFrame({"edge": edge, "far": far})
    y = pd.Series(edge + far + rng.normal(size=n))
    rule = QuadrantSettings(cut="target", importance_target=0.0, rating_target=3.0,
                            bootstrap_samples=400)
    t = fit_with_bootstrap(x, y, rule, np.random.default_rng(2)).set_index("item_code")
    assert 0.4 <= t.loc["edge", "placement_flip_share"] <= 0.6
    assert t.loc["far", "placement_flip_share"] == 0.0
    # the point placement: on the cut counts as high
    labels = place(t["importance"].to_numpy(), t["mean_rating"].to_numpy(),
                   np.array([True, True]), 0.0, 3.0)
    assert list(labels) == [KEEP_UP, KEEP_UP]


def test_every_segment_by_dimension_gets_its_own_groups():
    x, y = _synthetic(800, seed=4)
    long = _long(x, y)
    long["plan"] = np.where(long["response_id"] % 3 == 0, "basic", "plus")
    t = importance_table(long, {"goal_a": WIDE}, QuadrantSettings(bootstrap_samples=20),
                         segment_by=("segment", "plan", "not_a_column"))
    groups = set(map(tuple, t[["segment_by", "segment"]].drop_duplicates().to_numpy()))
    assert groups == {("all", "all"), ("segment", "smb"), ("segment", "consumer"),
                      ("plan", "basic"), ("plan", "plus")}


def test_the_sql_sample_caps_every_group_and_keeps_whole_responses(warehouse):
    """Real PostgreSQL: at most `cap` responses per group (all, each segment value), a small
    segment complete, every rating of a drawn response read, the same draw on a re-run;
    and the importances come from the drawn responses only."""
    from psycopg2.extras import execute_values

    from flows.config import Settings
    from flows.drivers import IN_ALL, run_drivers, sample_query

    x, y = _synthetic(3000, seed=5)
    long = _long(x, y)
    long["response_id"] = "r" + long["response_id"].astype(str)
    long["segment"] = np.where(long.index // 4 % 10 == 0, "rare", "common")  # ~300 rare
    with warehouse.transaction() as cur:
        cur.execute("create schema if not exists intermediate")
        cur.execute("""create table intermediate.int_driver_inputs (response_id text,
                       segment text, item_code text, touchpoint_code text,
                       rating double precision, overall_satisfaction double precision)""")
        execute_values(cur, "insert into intermediate.int_driver_inputs values %s",
                       long[["response_id", "segment", "item_code", "touchpoint_code", "rating",
                             "overall_satisfaction"]].itertuples(index=False))
    cols = ["response_id", "segment", "item_code", "rating"]
    q = sample_query(cols, ["segment", None])
    got = warehouse.read_frame(q, {"cap": 1000})
    again = warehouse.read_frame(q, {"cap": 1000})
    assert got.sort_values(cols).to_numpy().tolist() == again.sort_values(cols).to_numpy().tolist()
    per = got.drop_duplicates("response_id")
    assert per[IN_ALL].sum() == 1000
    assert per.loc[per._in_0 & (per.segment == "common"), "response_id"].nunique() == 1000
    rare = long.loc[long.segment == "rare", "response_id"].nunique()
    assert per.loc[per._in_0 & (per.segment == "rare"), "response_id"].nunique() == rare
    assert got.groupby("response_id").size().eq(4).all()  # whole responses
    assert len(per) < 3000

    settings = Settings()
    settings.goals = {"goal_a": WIDE}
    settings.quadrant = QuadrantSettings(bootstrap_samples=20, max_responses=1000)
    settings.domain.segment_by = ["segment"]
    assert run_drivers(warehouse, settings) > 0
    out = warehouse.read_frame("select segment, max(n) as n from "
                               "intermediate.py_driver_importance group by segment")
    assert dict(zip(out.segment, out.n, strict=True)) == {"all": 1000, "common": 1000,
                                                          "rare": rare}


def test_pairwise_correlations_match_pandas_with_gaps_and_short_pairs():
    from flows.drivers import pairwise_corr

    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 5))
    a[:, 1] += a[:, 0]
    a[rng.random(a.shape) < 0.3] = np.nan  # customers rate only what they met
    a[:1996, 4] = np.nan  # a pair with fewer than min_periods rows
    want = pd.DataFrame(a).corr(min_periods=5).to_numpy()
    got = pairwise_corr(a, min_periods=5)
    assert np.array_equal(np.isnan(want), np.isnan(got))
    assert np.nanmax(np.abs(want - got)) < 1e-12


def test_a_resample_taken_from_the_row_terms_is_the_resample_of_the_data():
    """The bootstrap takes each resample's rows from terms formed once: its correlations
    and means must be those of the resampled data itself (pandas, with gaps and repeats)."""
    from flows.drivers import _moments_of, _row_terms

    rng = np.random.default_rng(5)
    a = rng.normal(size=(500, 4))
    a[:, 2] += a[:, 1]
    a[rng.random(a.shape) < 0.4] = np.nan
    a[:, 3] = np.nan  # an item nobody rated: no mean, no correlation
    a[7, 3] = 1.0
    pick = rng.integers(0, len(a), 400)
    corr, means = _moments_of(np.take(_row_terms(a), pick, axis=0), min_periods=5)
    frame = pd.DataFrame(a[pick])
    want = frame.corr(min_periods=5).to_numpy()
    assert np.array_equal(np.isnan(want), np.isnan(corr))
    assert np.nanmax(np.abs(want - corr)) < 1e-12
    want_means = frame.mean().to_numpy()
    assert np.array_equal(np.isnan(want_means), np.isnan(means))
    assert np.nanmax(np.abs(want_means - means)) < 1e-12
