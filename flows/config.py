"""Configuration: one ``cxloop.yml``, validated on load, overridden by the environment.

A typo in a key must stop the run before it touches the warehouse, with a
message that names the key; so every model forbids unknown keys and errors are
rewritten as ``cxloop.yml: sources.crm.encoding: ...`` rather than a traceback.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.config_sections import (  # noqa: F401 - re-exported: flows.config is the API
    DEFAULT_CATEGORIES,
    DEFAULT_EXPERIENCE_DIMENSIONS,
    DEFAULT_ORDERED,
    DEFAULT_PLAUSIBLE,
    DEFAULT_SCALES,
    AlertSettings,
    ChurnSettings,
    Domain,
    Goal,
    QuadrantSettings,
    SubscriptionSettings,
    _default_goals,
    _Strict,
)
from flows.config_sections.base import known_entities
from flows.errors import ConfigError
from flows.mapping_config import EntityMapping, mapping_problems

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("cxloop.yml")


def _zone(v: str | None) -> str | None:
    """An IANA zone name, or a ValueError saying what one looks like."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if v is None:
        return v
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {v!r} (an IANA name such as Europe/Berlin)") from None
    return v


class FileSource(_Strict):
    """A landing folder of nightly files: ``<landing>/<source>/<entity>/<YYYY-MM-DD>/*``."""

    kind: Literal["files"] = "files"
    delimiter: str = ","
    encoding: str = "utf-8"
    # Zone of the source's timestamps without an offset (None: the top-level timezone).
    # A timestamp with an offset (2026-08-03T23:30+08:00) keeps its instant either way.
    timezone: str | None = None
    # Entities this source is expected to deliver every day; a day without one is a warning
    # in the run summary and record. Every entity is optional otherwise.
    entities: list[str] = Field(default_factory=list)
    # Per entity: how this source's export maps onto the contract (flows/mapping.py).
    mapping: dict[str, EntityMapping] = Field(default_factory=dict)
    # Which earlier delivery of an entity's day a new file replaces (flows/corrections.py):
    # same_name, the file of the same name; newest_of_day, every earlier file of the day.
    corrections: Literal["same_name", "newest_of_day"] = "same_name"

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, v: list[str]) -> list[str]:
        return known_entities(v)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (try utf-8 or gb18030)") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str | None) -> str | None:
        return _zone(v)

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
    timezone: str | None = None  # as for files: the zone of naive timestamps

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str | None) -> str | None:
        return _zone(v)


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
    # Where owners are notified: owner (a team or person of the routing), channel, address.
    owner_contacts: Path = REPO_ROOT / "dbt_project/seeds/owner_contacts.csv"
    # Customer tasks an owner team can take on per day or week, per rule class (tasks.yml
    # rule_class); past it they wait in marts.mart_task_backlog.
    owner_capacity: Path = REPO_ROOT / "dbt_project/seeds/owner_capacity.csv"


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
    # The night of the week whose dbt build tests every row, not only the rows the
    # incremental models rewrote (dbt_project/macros/test_slice.sql); None: only
    # --full-refresh runs and CXLOOP_FULL_TESTS=1 do.
    full_tests_weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday",
                                "saturday", "sunday"] | None = "sunday"
    # PostgreSQL work_mem of dbt's sessions: memory per sort or hash of a query before it
    # spills to disk. The server default (4MB) made int_churn_observations' joins spill at
    # 1M customers (313 s; 190 s at 128MB). A query may use several, and dbt runs two
    # threads: size it to the server's memory. None: the server's own setting.
    dbt_work_mem: str | None = "128MB"
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    # Goals, in order: the first is the headline one (the quadrant tasks and the report use).
    goals: dict[str, Goal] = Field(default_factory=_default_goals)
    quadrant: QuadrantSettings = Field(default_factory=QuadrantSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    domain: Domain = Field(default_factory=Domain)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
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
        from flows.actions.rules import load_rules  # the rule file's thresholds (task_param)

        return {**self.domain.dbt_vars(),
                "active_subscription_statuses": list(self.subscriptions.active_statuses),
                **self._goal_vars(), **self.churn.dbt_vars(), **load_rules(self.tasks).dbt_vars()}

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
    def _goals_fit_their_scales(self) -> Settings:
        """A goal's answers must be allowed by the scale GX checks them against: a binary
        goal on a 1-10 column would have every 0 quarantined before the goal saw it."""
        for name, goal in self.goals.items():
            scale = self.domain.scales.get(f"responses.{goal.column}")
            if scale is None or goal.range is None:
                continue
            if goal.range[0] < scale[0] or goal.range[1] > scale[1]:
                raise ValueError(
                    f"goals.{name}: range {list(goal.range)} is outside domain.scales "
                    f"responses.{goal.column} {list(scale)}; answers outside the scale are "
                    f"quarantined before the goal sees them: set domain.scales "
                    f"responses.{goal.column}: {list(goal.range)}")
        return self

    @model_validator(mode="after")
    def _active_statuses_are_statuses(self) -> Settings:
        """An active status that no row can have is a typo: say so before loading."""
        allowed = self.domain.categories.get("subscriptions.status")
        unknown = [s for s in self.subscriptions.active_statuses
                   if allowed is not None and s not in {a.lower() for a in allowed}]
        if unknown:
            raise ValueError(
                f"subscriptions.active_statuses: {', '.join(unknown)} not in "
                f"domain.categories['subscriptions.status'] ({', '.join(allowed)})")
        return self

    @field_validator("dbt_work_mem")
    @classmethod
    def _work_mem(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)", v):
            raise ValueError(f"expected a PostgreSQL memory size such as 128MB or 1GB, got {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        return _zone(v) or "UTC"

    def source_timezones(self) -> dict[str, str]:
        """Per source, the zone its naive timestamps are read in."""
        return {name: src.timezone or self.timezone for name, src in self.sources.items()}


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
        alerts = raw.get("alerts")
        if isinstance(alerts, dict) and isinstance(alerts.get("outbound"), str) \
                and not Path(alerts["outbound"]).is_absolute():
            alerts["outbound"] = str(base / alerts["outbound"])
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
