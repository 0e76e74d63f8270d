"""Configuration: one ``cxloop.yml``, validated on load, overridden by the environment.

A typo in a key must stop the run before it touches the warehouse, with a
message that names the key; so every model forbids unknown keys and errors are
rewritten as ``cxloop.yml: sources.crm.encoding: ...`` rather than a traceback.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.entities import ENTITIES
from flows.errors import ConfigError
from flows.mapping_config import EntityMapping, mapping_problems

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("cxloop.yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileSource(_Strict):
    """A landing folder of nightly files: ``<landing>/<source>/<entity>/<YYYY-MM-DD>/*``."""

    kind: Literal["files"] = "files"
    delimiter: str = ","
    encoding: str = "utf-8"
    # Entities this source is expected to deliver every day; a day without one is a warning
    # in the run summary and record. Every entity is optional otherwise.
    entities: list[str] = Field(default_factory=list)
    # Per entity: how this source's export maps onto the contract (flows/mapping.py).
    mapping: dict[str, EntityMapping] = Field(default_factory=dict)

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, v: list[str]) -> list[str]:
        from flows.entities import ENTITIES

        unknown = [e for e in v if e not in ENTITIES]
        if unknown:
            raise ValueError(f"unknown entit{'y' if len(unknown) == 1 else 'ies'} "
                             f"{', '.join(map(repr, unknown))}; known: {', '.join(ENTITIES)}")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (try utf-8 or gb18030)") from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1:
            raise ValueError(f"delimiter must be one character, got {v!r}")
        return v


class SqlSource(_Strict):
    """A PostgreSQL source read with one query per entity.

    The queries take the date window as bound parameters ``%(start)s`` and
    ``%(end)s`` (half-open, ``start <= t < end``); the URL comes from an
    environment variable so no secret lives in the file.
    """

    kind: Literal["sql"]
    url_env: str
    queries: dict[str, str]
    mapping: dict[str, EntityMapping] = Field(default_factory=dict)


def _source_kind(v: Any) -> str:
    """Which model reads a source: by its ``kind``, so an error is reported once, for that
    model, not for every member of the union."""
    kind = v.get("kind", "files") if isinstance(v, dict) else getattr(v, "kind", "files")
    return "SqlSource" if kind == "sql" else "FileSource"


Source = Annotated[Annotated[FileSource, Tag("FileSource")] | Annotated[SqlSource, Tag("SqlSource")],
                   Discriminator(_source_kind)]


class Reference(_Strict):
    touchpoint_catalogue: Path = REPO_ROOT / "dbt_project/seeds/touchpoint_catalogue.csv"
    owner_routing: Path = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"
    survey_items: Path = REPO_ROOT / "dbt_project/seeds/survey_items.csv"


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


class Domain(_Strict):
    """The company's domain: the values each categorical may take and each scale's range.

    GX checks them on every batch before ``raw`` (a value outside is quarantined with
    the allowed list as its reason), and dbt's tests get the same lists as vars. Keys
    given here replace that key's default; keys not given keep the demo's values.
    """

    categories: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_CATEGORIES.items()})
    scales: dict[str, tuple[int | float, int | float]] = Field(default_factory=lambda: dict(DEFAULT_SCALES))
    experience_dimensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPERIENCE_DIMENSIONS))
    # Customer columns (or ``attributes.<key>``) the scorecard, drivers and quadrant cut by.
    segment_by: list[str] = Field(default_factory=lambda: ["segment"])

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
            _contract_column(key, ("integer", "numeric", "bigint", "smallint",
                                   "double precision"), "numeric")
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
    # An early-warning flag whose backtest lift (churn rate of flagged over the base rate)
    # is below this is marked non-predictive and drives no tasks.
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


class Settings(_Strict):
    """The whole configuration, after the environment has been applied."""

    timezone: str = "UTC"
    landing: Path = Path("landing")
    sources: dict[str, Source] = Field(
        default_factory=lambda: {"crm": FileSource(), "survey": FileSource()}
    )
    reference: Reference = Field(default_factory=Reference)
    tasks: Path = REPO_ROOT / "tasks.yml"
    home: Path = Path(".cxloop")
    warehouse_url: str | None = None
    database: str = "cxloop"
    lock_timeout_seconds: int = Field(600, ge=0)
    # A stage running longer than this is stopped and the run fails (a hung query, a stuck
    # connection): better a clear failure at 05:00 than a run still going at noon.
    stage_timeout_seconds: int = Field(3600, ge=10)
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    # Goals, in order: the first is the headline one (the quadrant tasks and the report use).
    goals: dict[str, Goal] = Field(default_factory=_default_goals)
    quadrant: QuadrantSettings = Field(default_factory=QuadrantSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    domain: Domain = Field(default_factory=Domain)
    # The file these settings were read from (None: defaults only). Flows and deployments
    # receive this path, so every stage sees the same resolved settings, whatever the
    # working directory of the process that runs them.
    config_path: Path | None = None

    def redacted(self) -> dict[str, object]:
        """The settings as JSON-ready data with any password in the warehouse URL masked,
        for the run record (``ops.pipeline_runs.settings``): what a run used, no secrets."""
        data = self.model_dump(mode="json")
        if self.warehouse_url:
            from urllib.parse import urlsplit, urlunsplit

            parts = urlsplit(self.warehouse_url)
            if parts.password:
                netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
                data["warehouse_url"] = urlunsplit(parts._replace(netloc=netloc))
        return data

    def dbt_vars(self) -> dict[str, object]:
        """The dbt ``--vars`` this configuration implies (merged under ``run_date``).

        Business rules live in dbt models; the values they depend on (cut points,
        allowed categories, goal scales) come from here, so one file configures both.
        """
        return {**self.domain.dbt_vars(),
                "active_subscription_statuses": list(self.subscriptions.active_statuses),
                **self._goal_vars(), **self.churn.dbt_vars()}

    def _goal_vars(self) -> dict[str, object]:
        """Goals and quadrant rules as dbt vars (defaults repeated in dbt_project.yml)."""
        q = self.quadrant
        return {
            "goals": [{"name": name, "column": g.column, "kind": g.kind,
                       "range": list(g.range or ()), "top_box": list(g.top_box or [])}
                      for name, g in self.goals.items()],
            "quadrant_cut": q.cut,
            "quadrant_importance_target": q.importance_target,
            "quadrant_rating_target": q.rating_target,
            "quadrant_uncertain_flip_share": q.uncertain_flip_share,
        }

    @field_validator("goals")
    @classmethod
    def _some_goals(cls, v: dict[str, Goal]) -> dict[str, Goal]:
        if not v:
            raise ValueError("at least one goal is needed (drivers explain it)")
        bad = [name for name in v if not name.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"goal names {bad}: use letters, digits and underscores")
        return v

    @model_validator(mode="after")
    def _active_statuses_are_statuses(self) -> Settings:
        """An active status that no row can have is a typo: say so before loading."""
        domain = getattr(self, "domain", None)  # the domain settings, where configured
        allowed = (getattr(domain, "categories", None) or {}).get("subscriptions.status")
        unknown = [s for s in self.subscriptions.active_statuses
                   if allowed is not None and s not in {a.lower() for a in allowed}]
        if unknown:
            raise ValueError(
                f"subscriptions.active_statuses: {', '.join(unknown)} not in "
                f"domain.categories['subscriptions.status'] ({', '.join(allowed)})")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r} (an IANA name such as Europe/Berlin)") from None
        return v


# Environment variable -> settings key. The environment wins over the file.
ENV_OVERRIDES = {
    "CXLOOP_HOME": "home",
    "CXLOOP_WAREHOUSE_URL": "warehouse_url",
    "CXLOOP_LANDING": "landing",
    "CXLOOP_TIMEZONE": "timezone",
    "CXLOOP_DATABASE": "database",
    "CXLOOP_LOCK_TIMEOUT": "lock_timeout_seconds",
    "CXLOOP_STAGE_TIMEOUT": "stage_timeout_seconds",
}


def _format_errors(origin: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("FileSource", "SqlSource")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see cxloop.example.yml)"
        lines.append(f"{origin}: {key or '(top level)'}: {msg}")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """Read ``cxloop.yml`` (if present), apply the environment, then explicit overrides.

    A missing default file is fine (defaults apply); a missing file the user
    named is an error. Relative paths in the file are taken relative to the file.
    """
    raw: dict = {}
    origin = str(path or DEFAULT_CONFIG)
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{origin}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: expected a mapping of settings at the top level")
        raw = loaded
        base = path.resolve().parent
        for key in ("landing", "tasks", "home"):
            if key in raw and raw[key] is not None and not Path(str(raw[key])).is_absolute():
                raw[key] = str(base / str(raw[key]))
        ref = raw.get("reference")
        if isinstance(ref, dict):
            for key, value in list(ref.items()):
                if isinstance(value, str) and not Path(value).is_absolute():
                    ref[key] = str(base / value)
    elif explicit:
        raise ConfigError(f"{origin}: no such file (copy cxloop.example.yml to start one)")
    for env, key in ENV_OVERRIDES.items():
        if os.environ.get(env):
            raw[key] = os.environ[env]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if path.exists():
        raw["config_path"] = str(path.resolve())
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(origin, e)) from None
    problems = mapping_problems(settings.sources)
    if problems:
        raise ConfigError("\n".join(f"{origin}: {p}" for p in problems))
    return settings
