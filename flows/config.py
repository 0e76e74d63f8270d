"""Configuration: one ``cxloop.yml``, validated on load, overridden by the environment.

A typo in a key must stop the run before it touches the warehouse, with a
message that names the key; so every model forbids unknown keys and errors are
rewritten as ``cxloop.yml: sources.crm.encoding: ...`` rather than a traceback.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("cxloop.yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileSource(_Strict):
    """A landing folder of nightly files: ``<landing>/<source>/<entity>/<YYYY-MM-DD>/*``."""

    kind: Literal["files"] = "files"
    delimiter: str = ","
    encoding: str = "utf-8"
    # Entities this source is expected to deliver every day; others are optional.
    entities: list[str] = Field(default_factory=list)

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


class Reference(_Strict):
    touchpoint_catalogue: Path = REPO_ROOT / "dbt_project/seeds/touchpoint_catalogue.csv"
    owner_routing: Path = REPO_ROOT / "dbt_project/seeds/owner_routing.csv"
    survey_items: Path = REPO_ROOT / "dbt_project/seeds/survey_items.csv"


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


class Settings(_Strict):
    """The whole configuration, after the environment has been applied."""

    timezone: str = "UTC"
    landing: Path = Path("landing")
    sources: dict[str, FileSource | SqlSource] = Field(
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
    # The file these settings were read from (None: defaults only). Flows and deployments
    # receive this path, so every stage sees the same resolved settings, whatever the
    # working directory of the process that runs them.
    config_path: Path | None = None

    def dbt_vars(self) -> dict[str, object]:
        """The dbt ``--vars`` this configuration implies (merged under ``run_date``).

        Business rules live in dbt models; the values they depend on (cut points,
        allowed categories, goal scales) come from here, so one file configures both.
        """
        return {**self.churn.dbt_vars()}

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
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(origin, e)) from None
