"""The analysis sections of ``cxloop.yml``: the domain (allowed categories, scales,
experience dimensions, segmentation), goals, the quadrant rule, subscriptions and churn.

They live apart from ``flows/config.py`` (sources, paths, the environment, loading) so
each file stays readable; ``flows.config`` re-exports every name here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.entities import DATE_TYPES, ENTITIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The demo's domain: the defaults of ``domain:``. Nothing else in the code names these values.
_DEMO_CHANNELS = ["web", "app", "phone", "store", "field"]
_DEMO_PLANS = ["basic", "plus", "premium"]
DEFAULT_CATEGORIES: dict[str, list[str]] = {
    "customers.region": ["north", "south", "east", "west"],
    "customers.segment": ["consumer", "smb", "enterprise"],
    "customers.plan": _DEMO_PLANS,
    "customers.acquisition_channel": _DEMO_CHANNELS,
    "subscriptions.plan": _DEMO_PLANS,
    "subscriptions.status": ["active", "cancelled"],
    "interactions.channel": _DEMO_CHANNELS,
    "responses.comment_language": ["en", "zh"],
}
DEFAULT_SCALES: dict[str, tuple[int | float, int | float]] = {
    "responses.nps": (0, 10),
    "responses.csat": (1, 5),
    "responses.ces": (1, 7),
    "responses.overall_satisfaction": (1, 10),
    "responses.likelihood_to_renew": (1, 5),
    "item_ratings.rating": (1, 5),
}
# Plausible ranges ([min, max], None = open) of numeric columns, checked before ``raw``.
# The defaults are the quantities dbt's tests hold non-negative (``non_negative`` on the
# staging models): a configured range may narrow them, never go below that floor, so no
# delivered row can make a dbt test fail. tests/test_plausible.py keeps the two in step.
DEFAULT_PLAUSIBLE: dict[str, tuple[int | float | None, int | float | None]] = {
    "subscriptions.monthly_value": (0, None),
    "interactions.wait_seconds": (0, None),
    "interactions.handle_seconds": (0, None),
}
# Ordered date pairs of one entity: the first is never after the second (end >= start).
DEFAULT_ORDERED: list[tuple[str, str]] = [
    ("subscriptions.start_date", "subscriptions.end_date"),
    ("subscriptions.start_date", "subscriptions.renewal_date"),
]
DEFAULT_EXPERIENCE_DIMENSIONS = [
    "trust", "convenience", "keeping_promises", "respect", "autonomy",
    "choice", "knowledge", "recognition", "benefit", "status",
]
# Columns whose allowed values are not a company's domain: the pipeline's own vocabulary
# (survey_type drives the marts), reference codes (checked against the catalogue and
# item list) and the experience dimension (``domain.experience_dimensions``).
NOT_CATEGORIES = {
    "invitations.survey_type": "the pipeline's own vocabulary (transactional, relationship)",
    "responses.survey_type": "the pipeline's own vocabulary (transactional, relationship)",
    "item_ratings.dimension": "set domain.experience_dimensions instead",
}
REFERENCE_COLUMNS = ("touchpoint_code", "item_code")


def _contract_column(key: str, kinds: tuple[str, ...], what: str) -> tuple[str, str]:
    """``entity.column`` of the extract contract, or a ValueError naming the key."""
    entity, dot, column = str(key).partition(".")
    if not dot or not entity or not column:
        raise ValueError(f"key {key!r} must be <entity>.<column>, e.g. customers.segment")
    if entity not in ENTITIES:
        raise ValueError(f"key {key!r}: unknown entity {entity!r} "
                         f"(known: {', '.join(ENTITIES)})")
    e = ENTITIES[entity]
    if column not in e.column_names:
        raise ValueError(f"key {key!r}: entity {entity} has no column {column!r} "
                         f"(columns: {', '.join(e.column_names)})")
    if e.column(column).pg_type.split("(")[0] not in kinds:
        raise ValueError(f"key {key!r}: {column} is {e.column(column).pg_type}, "
                         f"not a {what} column")
    return entity, column


def _text_value(key: str, v: object) -> str:
    if isinstance(v, bool):  # YAML reads yes/no/on/off as booleans
        raise ValueError(f"key {key!r}: value {v!r} is a YAML boolean: quote the word ('yes', 'no')")
    if not isinstance(v, str | int | float):
        raise ValueError(f"key {key!r}: value {v!r} is not a plain value")
    return str(v)


_NUMERIC = ("integer", "numeric", "bigint", "smallint", "double precision")


def _bound(key: str, b: object) -> int | float | None:
    if b is None or (isinstance(b, int | float) and not isinstance(b, bool)):
        return b
    raise ValueError(f"key {key!r}: bound {b!r} is not a number or null")


class Domain(_Strict):
    """The company's domain: the values each categorical may take and each scale's range.

    GX checks them on every batch before ``raw`` (a value outside is quarantined with
    the allowed list as its reason), and dbt's tests get the same lists as vars. Keys
    given here replace that key's default; keys not given keep the demo's values.
    Plausibility (``plausible``, ``max_future_days``, ``ordered``) is checked the same
    way: an implausible row is quarantined with its column and value, it never reaches
    ``raw`` where it would fail a dbt test on every later run.
    """

    categories: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_CATEGORIES.items()})
    scales: dict[str, tuple[int | float, int | float]] = Field(default_factory=lambda: dict(DEFAULT_SCALES))
    experience_dimensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPERIENCE_DIMENSIONS))
    # Customer columns (or ``attributes.<key>``) the scorecard, drivers and quadrant cut by.
    segment_by: list[str] = Field(default_factory=lambda: ["segment"])
    plausible: dict[str, tuple[int | float | None, int | float | None]] = Field(
        default_factory=lambda: dict(DEFAULT_PLAUSIBLE))
    # A date or timestamp later than its file's extract date + this many days is
    # quarantined (planned dates such as a term end are exempt; the event time of an
    # entity may never be after the extract date).
    max_future_days: int = Field(1, ge=0, le=36600)
    ordered: list[tuple[str, str]] = Field(default_factory=lambda: list(DEFAULT_ORDERED))

    @field_validator("plausible", mode="before")
    @classmethod
    def _plausible(cls, v: object) -> dict[str, tuple[int | float | None, int | float | None]]:
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError("expected a mapping of <entity>.<column>: [min, max] (null = open)")
        out = dict(DEFAULT_PLAUSIBLE)
        for key, bounds in v.items():
            _contract_column(key, _NUMERIC, "numeric")
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise ValueError(f"key {key!r}: expected [min, max] (null = open), got {bounds!r}")
            lo, hi = (_bound(key, b) for b in bounds)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"key {key!r}: min {lo} is above max {hi}")
            floor = DEFAULT_PLAUSIBLE.get(key, (None, None))[0]
            if floor is not None and (lo is None or lo < floor):
                raise ValueError(f"key {key!r}: min {lo} is below {floor}, which dbt's tests "
                                 f"require (non_negative); use a min of at least {floor}")
            out[key] = (lo, hi)
        return {k: b for k, b in out.items() if b != (None, None)}

    @field_validator("ordered", mode="before")
    @classmethod
    def _ordered(cls, v: object) -> list[tuple[str, str]]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise ValueError("expected a list of [<entity>.<earlier>, <entity>.<later>] pairs")
        out = []
        for pair in v:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"{pair!r}: expected [<entity>.<earlier>, <entity>.<later>]")
            (e1, c1), (e2, c2) = (_contract_column(str(k), DATE_TYPES, "date or timestamp")
                                  for k in pair)
            if e1 != e2 or c1 == c2:
                raise ValueError(f"{list(pair)!r}: two different columns of one entity "
                                 "are needed")
            if (f"{e1}.{c1}", f"{e2}.{c2}") in out:
                raise ValueError(f"{list(pair)!r} is listed twice")
            out.append((f"{e1}.{c1}", f"{e2}.{c2}"))
        return out

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, v: object) -> dict[str, list[str]]:
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError("expected a mapping of <entity>.<column>: [allowed values]")
        out = {k: list(v) for k, v in DEFAULT_CATEGORIES.items()}
        for key, values in v.items():
            if key in NOT_CATEGORIES:
                raise ValueError(f"key {key!r} cannot be configured: {NOT_CATEGORIES[key]}")
            entity, column = _contract_column(key, ("text",), "text")
            if column in REFERENCE_COLUMNS:
                raise ValueError(f"key {key!r}: {column} is checked against the reference "
                                 "files (cxloop.yml: reference), not a list")
            if not isinstance(values, list) or not values:
                raise ValueError(f"key {key!r}: expected a non-empty list of values, "
                                 f"got {values!r}")
            texts = [_text_value(key, x) for x in values]
            dupes = sorted({x for x in texts if texts.count(x) > 1})
            if dupes:
                raise ValueError(f"key {key!r}: value {dupes[0]!r} is listed twice")
            out[key] = texts
        return out

    @field_validator("scales", mode="before")
    @classmethod
    def _scales(cls, v: object) -> dict[str, tuple[int | float, int | float]]:
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError("expected a mapping of <entity>.<column>: [low, high]")
        out = dict(DEFAULT_SCALES)
        for key, bounds in v.items():
            _contract_column(key, _NUMERIC, "numeric")
            ok = (isinstance(bounds, list | tuple) and len(bounds) == 2
                  and all(isinstance(b, int | float) and not isinstance(b, bool)
                          for b in bounds))
            if not ok:
                raise ValueError(f"key {key!r}: expected [low, high] numbers, got {bounds!r}")
            if bounds[0] > bounds[1]:
                raise ValueError(f"key {key!r}: low {bounds[0]} is above high {bounds[1]}")
            out[key] = (bounds[0], bounds[1])
        return out

    @field_validator("experience_dimensions", mode="before")
    @classmethod
    def _dimensions(cls, v: object) -> list[str]:
        if not isinstance(v, list) or not v:
            raise ValueError(f"expected a non-empty list of dimension names, got {v!r}")
        texts = [_text_value("experience_dimensions", x) for x in v]
        dupes = sorted({x for x in texts if texts.count(x) > 1})
        if dupes:
            raise ValueError(f"dimension {dupes[0]!r} is listed twice")
        return texts

    @field_validator("segment_by")
    @classmethod
    def _segment_by(cls, v: list[str]) -> list[str]:
        known = ENTITIES["customers"]
        for name in v:
            if name.startswith("attributes.") and len(name) > len("attributes."):
                continue
            if name not in known.column_names or known.column(name).pii:
                raise ValueError(
                    f"{name!r} is not a customer column (use one of "
                    f"{', '.join(c.name for c in known.columns if c.pg_type == 'text' and not c.pii)}"
                    " or attributes.<key>)")
        return v

    def allowed(self, entity: str, column: str) -> list[str] | None:
        """The configured values of ``entity.column``, or None if it is not a category."""
        return self.categories.get(f"{entity}.{column}")

    def scale(self, entity: str, column: str) -> tuple[int | float, int | float] | None:
        return self.scales.get(f"{entity}.{column}")

    def dbt_vars(self) -> dict[str, object]:
        return {
            "domain_categories": self.categories,
            "domain_scales": {k: list(v) for k, v in self.scales.items()},
            "experience_dimensions": self.experience_dimensions,
            "segment_by": self.segment_by,
        }


class ChurnSettings(_Strict):
    refit_every_days: int = Field(7, ge=1)
    min_concordance: float = Field(0.6, ge=0.5, le=1.0)
    min_events: int = Field(30, ge=5)
    # Landmark design: an observation of every active customer every N days back from the
    # run date, features over windows of this many days (dbt vars of int_churn_observations).
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


# --- alerts (helper "alerts", issue 15) ------------------------------------------------

class SmtpSettings(_Strict):
    """Where e-mail alerts go out. The password is never in the file: ``password_env``
    names the environment variable that holds it (and ``username_env`` the user's)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str | None = None  # unset: e-mail contacts are recorded as not sent, with a reason
    port: int = Field(25, ge=1, le=65535)
    from_addr: str = Field("cxloop@localhost", alias="from")
    # insecure (plain SMTP, e.g. a relay on the same host) | starttls | ssl
    secure: Literal["insecure", "starttls", "ssl"] = "insecure"
    username_env: str | None = None
    password_env: str | None = None
    timeout_seconds: float = Field(15.0, gt=0, le=300)


def _hh_mm(v: str) -> str:
    from datetime import time

    try:
        time.fromisoformat(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a time of day HH:MM (e.g. 22:00)") from None
    return v


class AlertSettings(_Strict):
    """The intra-day alerts run and owner notifications (flows/alerts.py, flows/notify.py)."""

    # Cron of the hourly ``alerts`` deployment (``cxloop serve`` and ``cxloop deploy``), in
    # the top-level timezone.
    schedule: str = "0 * * * *"
    # Entities the alerts run picks up from today's landing folders (the realtime rules'
    # inputs); the nightly run finds these batches already loaded.
    entities: list[str] = Field(default_factory=lambda: ["responses"], min_length=1)
    # [start, end] in the configured timezone: immediate alerts then wait for the digest.
    quiet_hours: tuple[str, str] | None = None
    # Immediate alerts per owner in any hour; the rest are folded into the next digest.
    max_immediate_per_owner_per_hour: int = Field(5, ge=0)
    # Attempts after the first for a message that failed, and the pause between them.
    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(2.0, ge=0, le=300)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    # Recovery-survey invitations go to <outbound>/survey/invitations/<date>/ (default
    # <home>/outbound).
    outbound: str | None = None
    # A link to the task in messages, e.g. "https://tickets.example.org/cx/{task_id}".
    task_link: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=v)
        except ValueError:
            raise ValueError(f"{v!r} is not a cron expression (e.g. '0 * * * *' for hourly)") from None
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _times(cls, v: tuple[str, str] | None) -> tuple[str, str] | None:
        if v is not None:
            for t in v:
                _hh_mm(t)
        return v

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in ENTITIES]
        if unknown:
            raise ValueError(f"unknown entities {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(ENTITIES)}")
        return v
