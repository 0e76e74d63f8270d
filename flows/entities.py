"""The extract contract: which entities exist, their columns, types and keys.

One table here is shared by the demo generator (what it writes), ingestion (what
it expects and how it casts into ``raw``), the Great Expectations suites (which
columns they check) and dbt's sources. Changing a column means changing it here
first, so the stages cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One extract column: its name, the Postgres type it is loaded as, and its role."""

    name: str
    pg_type: str
    required: bool = False  # null is a row-level failure
    pii: bool = False  # never leaves staging
    # The file may leave the column out (older exports, CRMs without the field): it
    # loads as null instead of rejecting the file.
    optional: bool = False
    # Smallest allowed value of a numeric column (a row below it is quarantined).
    min_value: int | None = None
    # A planned date (term end, next renewal) that may lie after the extract date; other
    # dates and timestamps are quarantined when later than extract date + domain.max_future_days.
    planned: bool = False


@dataclass(frozen=True)
class Entity:
    """One extract entity of a source system (a CRM table, a survey export)."""

    name: str
    source: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # Column whose date must not be after the extract (run) date.
    event_time: str | None = None
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        """The columns of a contract-shaped file."""
        return [c.name for c in self.columns]

    @property
    def raw_columns(self) -> tuple[Column, ...]:
        """What ``raw`` holds per row: the file's columns, then ``attributes``."""
        return (*self.columns, ATTRIBUTES)

    @property
    def raw_column_names(self) -> list[str]:
        return [c.name for c in self.raw_columns]

    @property
    def optional_columns(self) -> list[str]:
        """Columns a file may leave out; they load as null."""
        return [c.name for c in self.columns if c.optional]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"entity {self.name!r} has no column {name!r}")


# Columns of an export that the contract does not name (cabin class, industry), kept per
# row as one JSON object so any of them can become a segmentation dimension later
# (``attributes.<key>``). Optional: a contract-shaped file has no such column, and
# flows/mapping.py fills it when a file brings extra columns.
ATTRIBUTES = Column("attributes", "jsonb")


# Timestamps are stored as instants (timestamptz): an offset in the source
# (``2026-08-03T23:30+08:00``) is kept, a naive value is read in its source's configured
# zone (``sources.<src>.timezone``, default the top-level ``timezone``).
TIMESTAMP = "timestamptz"
DATE_TYPES = ("date", TIMESTAMP)


def _c(name: str, pg_type: str = "text", **kw: bool | int) -> Column:
    return Column(name, pg_type, **kw)


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        Entity(
            name="customers",
            source="crm",
            description="One row per customer and change: re-exported when an attribute changes.",
            key=("customer_id",),
            event_time="updated_at",
            columns=(
                _c("customer_id", required=True),
                _c("full_name", pii=True),
                _c("email", pii=True),
                _c("phone", pii=True),
                _c("region", required=True),
                _c("segment", required=True),
                _c("plan", required=True),
                _c("acquisition_channel"),
                _c("marketing_consent", "boolean", required=True),
                _c("signup_date", "date", required=True),
                _c("updated_at", TIMESTAMP, required=True),
            ),
        ),
        Entity(
            name="subscriptions",
            source="crm",
            description="Contracts: start, end or cancellation with a reason, monthly value; "
            "optionally the term end / next renewal, billing period and quantity.",
            key=("subscription_id",),
            event_time="updated_at",
            columns=(
                _c("subscription_id", required=True),
                _c("customer_id", required=True),
                _c("plan", required=True),
                _c("status", required=True),
                _c("start_date", "date", required=True),
                _c("end_date", "date", planned=True),
                _c("cancel_reason"),
                _c("monthly_value", "numeric(12,2)", required=True),
                _c("updated_at", TIMESTAMP, required=True),
                # Optional: a file without them loads (null; quantity null counts as 1).
                _c("renewal_date", "date", optional=True, planned=True),
                _c("billing_period", optional=True),
                _c("quantity", "integer", optional=True, min_value=1),
            ),
        ),
        Entity(
            name="orders",
            source="crm",
            description="Orders and their amounts.",
            key=("order_id",),
            event_time="order_date",
            columns=(
                _c("order_id", required=True),
                _c("customer_id", required=True),
                _c("order_date", "date", required=True),
                _c("amount", "numeric(12,2)", required=True),
            ),
        ),
        Entity(
            name="interactions",
            source="crm",
            description="Service interactions at a touchpoint, with operational measures.",
            key=("interaction_id",),
            event_time="occurred_at",
            columns=(
                _c("interaction_id", required=True),
                _c("customer_id", required=True),
                _c("touchpoint_code", required=True),
                _c("channel", required=True),
                _c("occurred_at", TIMESTAMP, required=True),
                _c("wait_seconds", "integer"),
                _c("handle_seconds", "integer"),
                _c("resolved", "boolean"),
                _c("first_contact_resolution", "boolean"),
            ),
        ),
        Entity(
            name="invitations",
            source="survey",
            description="Survey invitations, after an interaction or periodic; many never answered.",
            key=("invitation_id",),
            event_time="sent_at",
            columns=(
                _c("invitation_id", required=True),
                _c("customer_id", required=True),
                _c("survey_type", required=True),
                _c("interaction_id"),
                _c("touchpoint_code"),
                _c("sent_at", TIMESTAMP, required=True),
            ),
        ),
        Entity(
            name="responses",
            source="survey",
            description="Survey answers: NPS, CSAT, CES, overall satisfaction, renewal, comment.",
            key=("response_id",),
            event_time="responded_at",
            columns=(
                _c("response_id", required=True),
                _c("invitation_id", required=True),
                _c("customer_id", required=True),
                _c("survey_type", required=True),
                _c("touchpoint_code"),
                _c("invited_at", TIMESTAMP, required=True),
                _c("responded_at", TIMESTAMP, required=True),
                _c("nps", "integer"),
                _c("csat", "integer"),
                _c("ces", "integer"),
                _c("overall_satisfaction", "integer"),
                _c("likelihood_to_renew", "integer"),
                _c("comment"),
                _c("comment_language"),
            ),
        ),
        Entity(
            name="item_ratings",
            source="survey",
            description="Per-attribute ratings (1-5) of a response, tagged with a dimension.",
            key=("response_id", "item_code"),
            event_time="responded_at",
            columns=(
                _c("response_id", required=True),
                _c("customer_id", required=True),
                _c("item_code", required=True),
                _c("touchpoint_code", required=True),
                _c("dimension", required=True),
                # Empty = the respondent marked the item "not applicable" (an answer).
                _c("rating", "integer"),
                _c("responded_at", TIMESTAMP, required=True),
            ),
        ),
    ]
}

# The survey types the marts tell apart: the pipeline's vocabulary, not a company's
# domain (which lives in cxloop.yml ``domain:``, see flows/config_sections/domain.py).
SURVEY_TYPES = ("transactional", "relationship")

SOURCES = tuple(sorted({e.source for e in ENTITIES.values()}))


def entity(name: str) -> Entity:
    """The entity called ``name``, or a KeyError listing the known ones."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITIES)}") from None
