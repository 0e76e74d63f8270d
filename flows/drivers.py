"""Drivers: how strongly each touchpoint rating moves each goal, and how sure its quadrant is.

Survey items are correlated (a customer unhappy with billing is often unhappy
with support), so plain regression weights flip sign and correlations double
count. Johnson's relative weights (2000) split R² into non-negative shares that
sum to one, which is what the action-priority quadrant needs. A share has no
sign, though: an item whose standardised regression weight is negative (rating
it higher goes with a *lower* goal) is reported with ``effect_sign`` -1 so the
quadrant never offers it as a driver to fix.

A seeded bootstrap of respondents resamples both axes of the quadrant at once —
importance and mean rating — and reports, besides the 95 % intervals, the share
of resamples in which the item lands in another quadrant than on the full data
(``placement_flip_share``). Goals (column, scale) and the cut rule come from
``cxloop.yml`` (``goals:``, ``quadrant:``). At most ``quadrant.max_responses`` responses
per group (all, each segment value) are read: above it a sample drawn in SQL by a hash of
the response id (``sample_query``), so the stage's memory and time follow that cap, not
the history's length or the number of customers. Output goes to
``intermediate.py_driver_importance`` for dbt to read; the quadrant labels
themselves are given in dbt (``mart_priority_quadrant``) by the same rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from psycopg2 import sql
from psycopg2.extras import execute_values

from flows.config import Goal, QuadrantSettings, Settings
from flows.warehouse import Warehouse
from flows.warehouse.frames import copy_query_frame

log = logging.getLogger(__name__)

MIN_RESPONSES = 30
BOOTSTRAP_MAX_ROWS = 20_000
DEFAULT_SEGMENT_BY = ("segment",)
# Membership flags of the SQL sample: _in_all for the all-customers group, _in_<k> for
# the k-th segment_by dimension (a response may be drawn for one group and not another).
IN_ALL = "_in_all"

# Quadrant labels, as in mart_priority_quadrant.
FIX_FIRST, KEEP_UP, LOW_PRIORITY, OVERKILL, NEGATIVE = (
    "fix_first", "keep_up", "low_priority", "possible_overkill", "negative_effect")


def pairwise_corr(data: np.ndarray, min_periods: int = 1) -> np.ndarray:
    """Pearson correlations over pairwise-complete rows, as ``DataFrame.corr`` computes
    them, from a few matrix products instead of a loop over pairs (the bootstrap asks for
    thousands of these). NaN where a pair has fewer than ``min_periods`` rows or no spread.
    """
    return _moments_of(_row_terms(data), min_periods)[0]


def _row_terms(data: np.ndarray) -> np.ndarray:
    """Each row's terms of the pairwise sums: values (0 where missing), their squares and
    the presence flags, side by side. Taken once; a resample picks its rows from them."""
    m = ~np.isnan(data)
    x0 = np.where(m, data, 0.0)
    # row-major: a resample takes whole rows (from a column-major array the take is
    # strided, and cost more than the products on it)
    return np.ascontiguousarray(np.hstack([x0, x0 * x0, m.astype(float)]))


def _moments_of(terms: np.ndarray, min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """(``pairwise_corr``, each column's mean over its present rows) from ``_row_terms``:
    the means are the products' diagonals, so a resample gets them without another pass."""
    k = terms.shape[1] // 3
    x0, mf = terms[:, :k], terms[:, 2 * k:]
    # s[i, j]: sum of column i over the rows where j is present; ss the same of squares;
    # n: rows where both columns are present (one product for the three)
    sums = terms.T @ mf
    s, ss, n = sums[:k], sums[k:2 * k], sums[2 * k:]
    sxy = x0.T @ x0
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - s * s.T / n
        var_i = ss - s * s / n
        corr = cov / np.sqrt(var_i * var_i.T)
        means = np.diag(s) / np.diag(n)
    corr[n < max(min_periods, 2)] = np.nan
    return np.clip(corr, -1.0, 1.0), means


def relative_weights(x: pd.DataFrame | np.ndarray,
                     y: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Johnson's relative weights: (raw weights summing to R², standardised betas, R²).

    Uses pairwise-complete correlations (customers rate only the touchpoints
    they met) and clips negative eigenvalues so the matrix stays usable.
    """
    raw, std_beta, r2, _ = _relative_weights(_row_terms(
        np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])))
    return raw, std_beta, r2


def _relative_weights(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``relative_weights`` from the ``_row_terms`` of the items (first columns) and the
    goal (last), and each column's mean over its present rows."""
    corr, means = _moments_of(terms, min_periods=5)
    corr = np.nan_to_num(corr, nan=0.0)
    p = terms.shape[1] // 3 - 1
    rxx = corr[:p, :p].copy()
    np.fill_diagonal(rxx, 1.0)
    rxy = corr[:p, p]
    evals, evecs = np.linalg.eigh(rxx)
    evals = np.clip(evals, 1e-9, None)
    lam = evecs @ np.diag(np.sqrt(evals)) @ evecs.T  # corr(X, Z), Z the orthogonal twin of X
    beta_z = np.linalg.solve(lam, rxy)
    raw = (lam**2) @ (beta_z**2)
    r2 = float(raw.sum())
    std_beta = np.linalg.solve(evecs @ np.diag(evals) @ evecs.T, rxy)
    return raw, std_beta, r2, means


def cuts(importance: np.ndarray, rating: np.ndarray, positive: np.ndarray,
         rule: QuadrantSettings) -> tuple[float, float]:
    """(importance cut, rating cut) by the configured rule.

    The importance cut is taken over the positive-effect items only (a negative-effect
    item is no driver, so it should not lower the bar for the others); the rating cut
    over every item.
    """
    if rule.cut == "target":
        return float(rule.importance_target), float(rule.rating_target)
    pool = importance[positive] if positive.any() else importance
    agg = np.nanmedian if rule.cut == "median" else np.nanmean
    return float(agg(pool)), float(agg(rating))


def place(importance: np.ndarray, rating: np.ndarray, positive: np.ndarray,
          importance_cut: float, rating_cut: float) -> np.ndarray:
    """Quadrant labels; an item on a cut counts as high, a negative effect is its own label."""
    high_i = importance >= importance_cut
    high_r = rating >= rating_cut
    label = np.where(high_i, np.where(high_r, KEEP_UP, FIX_FIRST),
                     np.where(high_r, OVERKILL, LOW_PRIORITY))
    return np.where(positive, label, NEGATIVE)


@dataclass
class _Fit:
    share: np.ndarray
    std_beta: np.ndarray
    mean_rating: np.ndarray
    r2: float


def _fit(terms: np.ndarray) -> _Fit:
    """Both axes from the ``_row_terms`` of items (first columns) and the goal (last)."""
    raw, std_beta, r2, means = _relative_weights(terms)
    share = raw / r2 if r2 > 0 else np.zeros(terms.shape[1] // 3 - 1)
    return _Fit(share, std_beta, means[:-1], r2)  # NaN: an item nobody here rated


def _placement(f: _Fit, rule: QuadrantSettings) -> np.ndarray:
    positive = f.std_beta >= 0
    ic, rc = cuts(f.share, f.mean_rating, positive, rule)
    return place(f.share, f.mean_rating, positive, ic, rc)


def fit_with_bootstrap(x: pd.DataFrame, y: pd.Series, rule: QuadrantSettings,
                       rng: np.random.Generator,
                       max_rows: int = BOOTSTRAP_MAX_ROWS) -> pd.DataFrame:
    """One goal x segment: importance, sign, mean rating, intervals and placement flip share.

    Each resample refits both axes and recomputes the cuts (for mean/median rules the
    cuts move with the items), so the flip share is the quadrant's own uncertainty.
    """
    # the rows' terms of the sums, formed once and indexed by each resample: through pandas
    # (.iloc of a frame and a series, DataFrame.mean) the resampling took most of the
    # stage's time
    terms = _row_terms(np.column_stack([x.to_numpy(dtype=float), y.to_numpy(dtype=float)]))
    point = _fit(terms)
    # the reported mean summed in order (a rating exactly on a target cut stays on it)
    point.mean_rating = x.mean().to_numpy(dtype=float)
    placed = _placement(point, rule)
    n = len(y)
    rows = min(n, max_rows)
    shares, ratings, flips = [], [], np.zeros(x.shape[1])
    for _ in range(rule.bootstrap_samples):
        pick = rng.integers(0, n, rows)
        b = _fit(terms[pick])
        shares.append(b.share)
        ratings.append(b.mean_rating)
        flips += _placement(b, rule) != placed
    lo, hi = np.nanpercentile(np.array(shares), [2.5, 97.5], axis=0)
    r_lo, r_hi = np.nanpercentile(np.array(ratings), [2.5, 97.5], axis=0)
    return pd.DataFrame({
        "item_code": list(x.columns),
        "n": x.notna().sum().to_numpy(dtype=int),
        "importance": point.share, "importance_low": lo, "importance_high": hi,
        "std_beta": point.std_beta, "effect_sign": np.where(point.std_beta >= 0, 1, -1),
        "mean_rating": point.mean_rating, "mean_rating_low": r_lo, "mean_rating_high": r_hi,
        "r_squared": point.r2, "placement_flip_share": flips / rule.bootstrap_samples,
        "n_bootstrap": rule.bootstrap_samples,
    })


def goal_values(values: pd.Series, goal: Goal) -> pd.Series:
    """The goal's answers on its declared scale; anything outside it becomes missing."""
    y = pd.to_numeric(values, errors="coerce")
    low, high = goal.range or (-np.inf, np.inf)
    if goal.kind == "binary":
        return y.where(y.isin([0, 1]))
    return y.where(y.between(low, high))


def importance_table(long: pd.DataFrame, goals: dict[str, Goal] | None = None,
                     rule: QuadrantSettings | None = None,
                     segment_by: Sequence[str] = DEFAULT_SEGMENT_BY,
                     seed: int = 11) -> pd.DataFrame:
    """Importance per goal x segment x item from ``int_driver_inputs`` rows.

    Segments: 'all', then every value of each ``segment_by`` column present in ``long``.
    """
    if long.empty:
        return pd.DataFrame()
    goals = goals or Settings().goals
    rule = rule or QuadrantSettings()
    wide = long.pivot_table(index="response_id", columns="item_code", values="rating",
                            aggfunc="mean")
    meta = long.drop_duplicates("response_id").set_index("response_id").loc[wide.index]
    touch = long.drop_duplicates("item_code").set_index("item_code")["touchpoint_code"]
    rng = np.random.default_rng(seed)

    def drawn(flag: str) -> pd.Series:
        """The responses sampled for a group (every one when the rows carry no flags)."""
        if flag not in meta.columns:
            return pd.Series(True, index=meta.index)
        return meta[flag].fillna(False).astype(bool)

    groups: list[tuple[str, str, pd.Index]] = [("all", "all", meta.index[drawn(IN_ALL)])]
    for k, dim in enumerate(segment_by):
        if dim not in meta.columns:
            log.warning("drivers: segment_by %r is not a column of int_driver_inputs; skipped", dim)
            continue
        mine = drawn(f"_in_{k}")
        for value in sorted(meta.loc[mine, dim].dropna().astype(str).unique()):
            groups.append((dim, value, meta.index[mine & (meta[dim].astype(str) == value)]))
    out = []
    for name, goal in goals.items():
        if goal.column not in meta.columns:
            log.warning("drivers: goal %s: column %s not in the inputs; skipped", name, goal.column)
            continue
        y_all = goal_values(meta[goal.column], goal)
        for dim, value, ids in groups:
            y = y_all.loc[ids].dropna()
            if len(y) < MIN_RESPONSES or y.nunique() < 2:
                continue
            x = wide.loc[y.index]
            t = fit_with_bootstrap(x, y, rule, rng)
            t.insert(0, "goal", name)
            t.insert(1, "segment_by", dim)
            t.insert(2, "segment", value)
            t.insert(4, "touchpoint_code", t["item_code"].map(touch))
            out.append(t)
    if not out:
        return pd.DataFrame()
    table = pd.concat(out, ignore_index=True)
    table["method"] = "johnson_relative_weights"
    return table


def segment_dimensions(settings: Settings) -> tuple[str, ...]:
    """``domain.segment_by`` (default: the customer segment)."""
    return tuple(settings.domain.segment_by) or DEFAULT_SEGMENT_BY


INPUTS = sql.SQL("intermediate.int_driver_inputs")


def sample_query(columns: Sequence[str], dims: Sequence[str | None]) -> sql.Composed:
    """The driver inputs of at most ``%(cap)s`` responses per group, with membership flags.

    Responses are ranked by a hash of their id (deterministic, unrelated to anything the
    analysis looks at), overall for the all-customers group (``_in_all``) and within each
    value of each segment dimension (``_in_<k>``; None: a dimension the table lacks); a
    response's item ratings are read when it ranks within the cap of any group. Each
    group is then a simple random sample of its own responses, so the estimates need no
    weights, and a small segment keeps every response although the whole base is sampled.
    """
    q = sql.Identifier
    ranks = [sql.SQL("row_number() over (order by h, response_id) <= %(cap)s as {}")
             .format(q(IN_ALL))]
    ranks += [sql.SQL("row_number() over (partition by {} order by h, response_id) "
                      "<= %(cap)s as {}").format(q(d), q(f"_in_{k}"))
              for k, d in enumerate(dims) if d is not None]
    flags = [IN_ALL] + [f"_in_{k}" for k, d in enumerate(dims) if d is not None]
    dim_cols = [d for d in dims if d is not None]
    return sql.SQL(
        """with responses as (
             select distinct on (response_id) response_id, {dim_cols}
                 hashtext(cast(response_id as text)) as h
             from {inputs} order by response_id
           ), ranked as (
             select response_id, {ranks} from responses
           )
           select {cols}, {flag_cols}
           from {inputs} as i join ranked as r on r.response_id = i.response_id
           where {any_flag}""").format(
        dim_cols=sql.SQL("").join(sql.SQL("{}, ").format(q(d)) for d in dim_cols),
        inputs=INPUTS, ranks=sql.SQL(", ").join(ranks),
        cols=sql.SQL(", ").join(sql.SQL("i.{}").format(q(c)) for c in columns),
        flag_cols=sql.SQL(", ").join(sql.SQL("r.{}").format(q(f)) for f in flags),
        any_flag=sql.SQL(" or ").join(sql.SQL("r.{}").format(q(f)) for f in flags))


def run_drivers(wh: Warehouse, settings: Settings) -> int:
    """Read a sample of the driver inputs, compute importances, replace the output table
    atomically.

    At most ``quadrant.max_responses`` responses per group are read (``sample_query``):
    the rows moved to Python, and the frames built from them, are bounded by that cap
    whatever the number of customers or the length of the history. They travel by COPY
    (``copy_query_frame``): fetched as Python objects, the 1.1M rows of a million
    customers' sample raised the run by 880 MB. The settings are the
    run's own (never re-read from the working directory)."""
    dims = segment_dimensions(settings)
    available = set(wh.read_frame(sql.SQL("select * from {} limit 0").format(INPUTS)).columns)
    wanted = ["response_id", "item_code", "touchpoint_code", "rating",
              *[d for d in dims if d in available],
              *sorted({g.column for g in settings.goals.values()} & available)]
    query = sample_query(list(dict.fromkeys(wanted)), [d if d in available else None for d in dims])
    long = copy_query_frame(wh, query, {"cap": settings.quadrant.max_responses})
    table = importance_table(long, settings.goals, settings.quadrant, dims)
    del long
    with wh.transaction() as cur:
        cur.execute("delete from intermediate.py_driver_importance")
        if len(table):
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
            stmt = sql.SQL("insert into intermediate.py_driver_importance ({}) values %s").format(cols)
            execute_values(cur, stmt,
                           [tuple(_py(v) for v in r) for r in table.itertuples(index=False)])
    log.info("driver importance: %d rows", len(table))
    return len(table)


def _py(v: object) -> object:
    """numpy scalars -> Python (psycopg2 adapts only the latter)."""
    return v.item() if isinstance(v, np.generic) else v
