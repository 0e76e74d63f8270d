"""The analysis sections of ``cxloop.yml``: ``goals``, ``quadrant``, ``subscriptions``
and ``churn``.

They sit together because each only tunes how the marts, the drivers and the churn
model read data that has already passed the domain checks; none of them touches loading.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flows.config_sections.base import _Strict


class ChurnSettings(_Strict):
    refit_every_days: int = Field(7, ge=1)
    min_concordance: float = Field(0.6, ge=0.5, le=1.0)
    min_events: int = Field(30, ge=5)
    # Landmark design: an observation of every active customer on the run date and every N
    # observed days from the first loaded extract before it (fixed dates, so their rows are
    # kept between nights), features over windows of this many days (dbt vars of
    # int_churn_observation_states).
    observation_every_days: int = Field(30, ge=1, le=365)
    feature_window_days: int = Field(90, ge=7, le=730)
    # Out-of-time backtest: fit on observations before run date - backtest_days, score the
    # observation then, compare with what followed; training rows are followed follow_days.
    backtest_days: int = Field(90, ge=30, le=365)
    follow_days: int = Field(180, ge=30, le=730)
    # Risk bands as shares of the scored customers, riskiest first: {high: 0.05,
    # medium: 0.15} = the top 5 % are high, the next 15 % medium, the rest low.
    risk_bands: dict[Literal["high", "medium"], float] = Field(
        default_factory=lambda: {"high": 0.05, "medium": 0.15})
    # An early-warning flag whose backtest lift (churn rate of flagged over the base rate),
    # at the lower end of its 90 % interval, is below this is marked non-predictive and
    # drives no tasks.
    min_warning_lift: float = Field(1.2, ge=1.0)

    @field_validator("risk_bands")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        if any(not 0 <= s <= 1 for s in v.values()) or sum(v.values()) > 1:
            raise ValueError("risk band shares must lie in [0, 1] and sum to at most 1")
        return {"high": v.get("high", 0.05), "medium": v.get("medium", 0.15)}

    def dbt_vars(self) -> dict[str, object]:
        return {"churn_observation_every_days": self.observation_every_days,
                "churn_feature_window_days": self.feature_window_days,
                "churn_risk_band_high_share": self.risk_bands["high"],
                "churn_risk_band_medium_share": self.risk_bands["medium"]}


def _goal_columns() -> tuple[str, ...]:
    """Response columns a goal may name: the integer answers of the responses contract."""
    from flows.entities import ENTITIES

    return tuple(c.name for c in ENTITIES["responses"].columns if c.pg_type == "integer")


class Goal(_Strict):
    """A goal the drivers explain and the marts report as a top-box share.

    ``numeric``: an answer on ``range`` (inclusive); ``top_box`` lists the answers that
    count as the best outcome (default: the top of the range). ``binary``: 0/1 (no/yes),
    ``top_box`` [1] unless the good answer is 0. The scales are declared here, not
    guessed from the data, because a share of "top box" answers means nothing without
    them; values outside the range are left out of the share.
    """

    column: str
    kind: Literal["numeric", "binary"] = "numeric"
    range: tuple[int, int] | None = None
    top_box: list[int] | None = None

    @field_validator("column")
    @classmethod
    def _known_column(cls, v: str) -> str:
        allowed = _goal_columns()
        if v not in allowed:
            raise ValueError(f"column {v!r} is not an integer column of responses "
                             f"(one of: {', '.join(allowed)})")
        return v

    @model_validator(mode="after")
    def _scale(self) -> Goal:
        if self.kind == "binary":
            if self.range not in (None, (0, 1)):
                raise ValueError(f"a binary goal has range [0, 1], got {list(self.range)}")
            self.range = (0, 1)
            self.top_box = self.top_box or [1]
        elif self.range is None:
            raise ValueError("a numeric goal needs range: [low, high] (e.g. [1, 10])")
        low, high = self.range
        if low >= high:
            raise ValueError(f"range [{low}, {high}]: low must be below high")
        self.top_box = sorted(set(self.top_box or [high]))
        outside = [v for v in self.top_box if not low <= v <= high]
        if outside:
            raise ValueError(f"top_box {outside} outside range [{low}, {high}]")
        return self


def _default_goals() -> dict[str, Goal]:
    return {
        "overall_satisfaction": Goal(column="overall_satisfaction", range=(1, 10), top_box=[9, 10]),
        "likelihood_to_renew": Goal(column="likelihood_to_renew", range=(1, 5), top_box=[5]),
    }


class QuadrantSettings(_Strict):
    """How the action-priority quadrant cuts its two axes, and how sure a placement is.

    ``mean`` / ``median``: across the items of the goal x segment (importance over the items
    with a positive effect: a negative-effect item is no driver to compete with);
    ``target``: fixed levels, e.g. the importance share and the mean rating management
    aims for. A placement is uncertain when more than ``uncertain_flip_share`` of the
    bootstrap resamples put the item in another quadrant.
    """

    cut: Literal["mean", "median", "target"] = "mean"
    importance_target: float | None = Field(None, ge=0, le=1)
    rating_target: float | None = None
    bootstrap_samples: int = Field(200, ge=20, le=5000)
    uncertain_flip_share: float = Field(0.1, ge=0, lt=1)
    # Responses the drivers read per group (all, and each segment value): above it a
    # sample drawn in SQL by a hash of the response id, so memory and time stay bounded
    # however long the history (the intervals then reflect the sample, not the history).
    max_responses: int = Field(50_000, ge=1_000)

    @model_validator(mode="after")
    def _targets(self) -> QuadrantSettings:
        if self.cut == "target" and (self.importance_target is None or self.rating_target is None):
            raise ValueError("cut is 'target': set both importance_target (0-1) and rating_target")
        return self


class SubscriptionSettings(_Strict):
    """How subscriptions are read: which statuses count as active.

    A customer's value is the sum of monthly_value x quantity over their active
    subscriptions; statuses outside this list (cancelled, paused, expired...) do not
    count, and a customer whose subscriptions have none left and have ended has churned.
    """

    active_statuses: list[str] = Field(default_factory=lambda: ["active"], min_length=1)

    @field_validator("active_statuses")
    @classmethod
    def _normalised(cls, v: list[str]) -> list[str]:
        # Staging lower-cases and trims status; compare like with like.
        out = [s.strip().lower() for s in v]
        if any(not s for s in out):
            raise ValueError("an active status is empty")
        return list(dict.fromkeys(out))

