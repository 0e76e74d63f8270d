"""The task rule file (``tasks.yml``) and the owner capacity table: policy, no SQL.

A rule says what a task looks like (severity, SLA, title, realtime flag, contact rule,
capacity class) and which dbt model holds its candidates
(``dbt_project/models/intermediate/actions/int_task_candidates__<rule>.sql``); its
thresholds (``params``) reach that model as the dbt var ``task_params``.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.errors import ConfigError

OPEN_STATUSES = ("open", "in_progress")
CLOSED_STATUSES = ("done", "resolved", "dismissed", "wont_fix")
SUPPRESSED = "suppressed"
MODEL_PREFIX = "int_task_candidates__"
CANDIDATE_SCHEMA = "intermediate"
CAPACITY_PERIODS = ("day", "week")


class Rule(BaseModel):
    """One rule of ``tasks.yml``: which model raises it and what the task says."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    subject: Literal["touchpoint", "customer", "segment"]
    # The dbt model with the rule's candidates (default int_task_candidates__<name>), in the
    # intermediate schema, with the columns of models/intermediate/actions/_task_candidates__models.yml.
    model: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    title: str  # str.format over the candidate's evidence (plus subject_id, period, ...)
    period: Literal["day", "week", "month"] = "month"
    severity: int = Field(2, ge=1, le=3)
    sla_hours: int = Field(168, ge=1)
    contact: bool = False  # contacts a customer: consent and contact cap apply
    # Opened by the intra-day alerts run as soon as its evidence lands (a hot alert), not
    # only by the nightly run; the nightly run finds it under the same natural key.
    realtime: bool = False
    # each_date: the model has candidates for every date of int_task_dates, so a backfill
    # derives the tasks each night would have made; last_date: the rule does not look back
    # (its marts exist as of the run date only) and a backfill evaluates it on its last date.
    backfill: Literal["each_date", "last_date"] = "last_date"
    # Capacity class (owner_capacity.rule_class): customer tasks of one class beyond an owner
    # team's capacity wait in the backlog; default: the subject type.
    rule_class: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    # Thresholds the model reads with the macro task_param (dbt var task_params).
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_sql(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trigger" in data:
            raise ValueError(
                "rules hold no SQL any more: move the trigger into the dbt model "
                f"dbt_project/models/intermediate/actions/{MODEL_PREFIX}{data.get('name', '<rule>')}"
                ".sql (columns as in _task_candidates__models.yml) and delete `trigger`")
        return data

    @property
    def model_name(self) -> str:
        return self.model or f"{MODEL_PREFIX}{self.name}"

    @property
    def capacity_class(self) -> str:
        return self.rule_class or self.subject


class RuleSet(BaseModel):
    """The whole rule file: contact limits, the value-at-risk step and the rules."""

    model_config = ConfigDict(extra="forbid")

    contact_cap: int = Field(2, ge=1)
    contact_window_days: int = Field(30, ge=1)
    high_value_at_risk: float = 500.0
    rules: list[Rule]

    def dbt_vars(self) -> dict[str, object]:
        """The rules' thresholds as the dbt var the candidate models read (task_param)."""
        return {"task_params": {r.name: dict(r.params) for r in self.rules if r.params}}


def load_rules(path: Path) -> RuleSet:
    """Read and validate ``tasks.yml``; every problem names the file and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such task rules file (cxloop.yml: tasks)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        rules = RuleSet.model_validate(data)
    except ValidationError as e:
        msgs = [f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(msgs)) from None
    names = [r.name for r in rules.rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        # The rule name is part of every natural key: two rules with one name would
        # overwrite each other's tasks.
        raise ConfigError(f"{path}: rule names must be unique; repeated: {', '.join(dupes)}")
    return rules


@dataclass(frozen=True)
class Route:
    owner_team: str
    owner_person: str
    escalation_owner: str
    fallback: bool


class Router:
    """The owner routing file, checked (a fallback row must exist) and its people listed.

    Routing itself is SQL (macro ``route_to_owner`` over the ``owner_routing`` seed,
    joined in every candidate model); this class keeps the file-level checks, the list
    of everyone a task may reach, and the same rule in Python for checks and tests.
    """

    def __init__(self, path: Path):
        try:
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such owner routing file (cxloop.yml: "
                              "reference.owner_routing)") from None
        if not any(r.get("is_fallback", "").lower() == "true" for r in self.rows):
            raise ConfigError(f"{path}: no fallback owner row (is_fallback = true); add one "
                              "such as `*,*,*,cx_office,cx.duty.manager,head.of.cx,true`")

    def teams(self) -> set[str]:
        return {r["owner_team"] for r in self.rows}

    def route(self, key: str, region: str | None, segment: str | None) -> Route:
        """Where the SQL routing (macro route_to_owner) sends one key, for checks and tests:
        the most specific row of touchpoint x region x segment wins, else the fallback."""
        best, best_score = None, -1
        for r in self.rows:
            if r["is_fallback"].lower() == "true" or r["touchpoint_code"] != key:
                continue
            if r["region"] not in ("*", region) or r["segment"] not in ("*", segment):
                continue
            score = 2 * (r["region"] != "*") + (r["segment"] != "*")
            if score > best_score:
                best, best_score = r, score
        row = best or next(r for r in self.rows if r["is_fallback"].lower() == "true")
        return Route(row["owner_team"], row["owner_person"], row["escalation_owner"], best is None)

    def people(self) -> set[str]:
        """Everyone a task may be routed or escalated to (for checks and tests)."""
        return {r["owner_person"] for r in self.rows} | {r["escalation_owner"] for r in self.rows}


@dataclass(frozen=True)
class Capacity:
    owner_team: str
    rule_class: str
    period: str
    capacity: int


def load_capacity(path: Path, rules: RuleSet, router: Router) -> tuple[list[Capacity], list[str]]:
    """Read the owner capacity file; returns its rows and warnings about rows that apply to
    nothing. A malformed row (period, capacity, a repeated team and class) is an error.

    Capacity holds back customer tasks only, so a row applies when it names the class of a
    customer rule, for a team of the routing table or ``*`` (every team without a row of
    its own); a row that names neither is reported (a typo, or the demo's file kept with
    another company's routing) and changes nothing.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such owner capacity file (cxloop.yml: "
                          "reference.owner_capacity)") from None
    classes = {r.capacity_class for r in rules.rules if r.subject == "customer"}
    teams = router.teams()
    out, problems, warnings, seen = [], [], [], set()
    for n, row in enumerate(rows, start=2):
        at = f"{path}: line {n}:"
        team, cls = (row.get("owner_team") or "").strip(), (row.get("rule_class") or "").strip()
        period, cap = (row.get("period") or "").strip(), (row.get("capacity") or "").strip()
        if period not in CAPACITY_PERIODS:
            problems.append(f"{at} period {period!r} must be one of {', '.join(CAPACITY_PERIODS)}")
        if not cap.isdigit():
            problems.append(f"{at} capacity {cap!r} must be a whole number of tasks (0 or more)")
        if (team, cls) in seen:
            problems.append(f"{at} a second row for owner_team {team!r} and rule_class {cls!r}")
        seen.add((team, cls))
        if team != "*" and team not in teams:
            warnings.append(f"{at} owner_team {team!r} is not a team of the routing table "
                            f"({', '.join(sorted(teams))}) nor '*'; the row applies to no task")
        if cls not in classes:
            warnings.append(f"{at} rule_class {cls!r} is not the class of a customer rule in "
                            f"the task rules ({', '.join(sorted(classes)) or 'none'}); the row "
                            "applies to no task (set a rule's rule_class in tasks.yml)")
        if not problems:
            out.append(Capacity(team, cls, period, int(cap)))
    if problems:
        raise ConfigError("\n".join(problems))
    return out, warnings


def period_of(run_date: date, period: str) -> str:
    if period == "day":
        return run_date.isoformat()
    if period == "week":
        y, w, _ = run_date.isocalendar()
        return f"{y}-W{w:02d}"
    return f"{run_date:%Y-%m}"


def task_id(natural_key: str) -> str:
    """The task id: a hash of the natural key (the SQL computes the same, see derive)."""
    return "T" + hashlib.sha256(natural_key.encode()).hexdigest()[:15]


def priority(severity: int, value_at_risk: float | None, high_value: float) -> int:
    """1 is most urgent: rule severity first, one step up when much value is at risk."""
    p = 4 - severity
    if value_at_risk is not None and value_at_risk >= high_value:
        p -= 1
    return max(1, p)


def as_of_for(run_date: date) -> datetime:
    """The run's clock: midnight after ``run_date`` (UTC), so every re-run sees the same time."""
    return datetime.combine(run_date + timedelta(days=1), time(0), tzinfo=UTC)
