"""The ``domain:`` section of ``cxloop.yml``: allowed categories, scales, plausible
ranges, future dates, ordered date pairs, experience dimensions and segmentation.

It lives apart from the other sections because it is the one place the demo's domain
is named (as defaults) and because its checks are tied to the extract contract
(``flows/entities.py``): every key is an ``<entity>.<column>`` validated against it.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from flows.config_sections.base import _Strict
from flows.entities import DATE_TYPES, ENTITIES

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
DEFAULT_PEOPLE_DIMENSIONS = ["respect", "knowledge", "recognition"]
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
    # The dimensions about how people treat the customer (the rest are process and
    # product): mart_early_warnings' people_high_process_low flag compares the two.
    # Not given: the demo's (respect, knowledge, recognition) that experience_dimensions lists.
    people_dimensions: list[str] | None = None
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

    @field_validator("people_dimensions", mode="before")
    @classmethod
    def _people(cls, v: object) -> list[str] | None:
        if v is None:
            return None
        if not isinstance(v, list):
            raise ValueError(f"expected a list of experience dimension names, got {v!r}")
        return [_text_value("people_dimensions", x) for x in v]

    @model_validator(mode="after")
    def _people_are_dimensions(self) -> Domain:
        if self.people_dimensions is None:
            self.people_dimensions = [d for d in DEFAULT_PEOPLE_DIMENSIONS
                                      if d in self.experience_dimensions]
            return self
        unknown = [d for d in self.people_dimensions if d not in self.experience_dimensions]
        if unknown:
            raise ValueError(f"people_dimensions: {unknown[0]!r} is not one of "
                             "domain.experience_dimensions")
        return self

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
            "people_dimensions": self.people_dimensions,
            "segment_by": self.segment_by,
        }
