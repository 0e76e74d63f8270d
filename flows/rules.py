"""Row rules of the suites, and the ones whose values come from ``domain:``.

A company's categories and scales are configuration, not suite content: the
committed suites (``expectations/``) hold the default domain, each run stores the
configured one in ``ops`` and gives it to GX as suite parameters (``{"$PARAMETER":
"customers__segment__values"}``), and the bad-row SQL reads the same ``ops`` tables.
So one set of JSON files serves every company, and a value outside the configured
list is quarantined before ``raw`` with that list as its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.config import Domain
from flows.entities import DATE_TYPES, ENTITIES, Entity

PARSE, TYPED = "parse", "typed"  # the table a rule runs on: text stage or typed batches

# The company's domain (cxloop.yml ``domain:``): each run stores it in these tables
# (``store_domain``) and GX gets it as suite parameters, so the committed suites stay the
# same whatever a company's segments, plans or scales are. The dimension of an item
# rating is a category whose values are ``domain.experience_dimensions``.
DOMAIN_CATEGORIES = "ops.ref_domain_categories"
DOMAIN_SCALES = "ops.ref_domain_scales"
DIMENSION_KEY = "item_ratings.dimension"
# Plausibility (``domain.plausible``, ``max_future_days``, ``ordered``), stored the same way.
DOMAIN_PLAUSIBLE = "ops.ref_domain_plausible"
DOMAIN_FUTURE = "ops.ref_domain_future_days"
DOMAIN_ORDERED = "ops.ref_domain_ordered"
FUTURE_PARAMETER = "max_future_days"
ORDERED_PARAMETER = "ordered_pairs"  # "<entity>.<earlier>.<later>" (configure_suite only)


@dataclass(frozen=True)
class Rule:
    """One row-level rule: its name, a message a person can act on, the GX expectation
    that judges it, and the SQL of its bad rows (what quarantine moves)."""

    name: str
    description: str
    expectation: str
    kwargs: dict[str, Any]
    bad_rows: str
    on: str = TYPED
    domain: str | None = None  # the ``domain:`` key whose configured values it checks
    kind: str | None = None  # which domain rule: category, scale, plausible, future, ordered
    # Columns whose values a quarantined row's reason names ("monthly_value = -99.00").
    shows: tuple[str, ...] = ()


def literal_in_template(value: str) -> str:
    """A SQL string literal inside a bad-row template, which is filled with str.format
    (as GX fills ``{batch}``): quotes doubled for SQL, braces doubled for format."""
    return "'" + value.replace("'", "''").replace("{", "{{").replace("}", "}}") + "'"


def expectation(r: Rule) -> dict[str, Any]:
    meta: dict[str, Any] = {"rule": r.name, "level": "row", "on": r.on, "bad_rows": r.bad_rows}
    if r.domain:
        meta["domain"] = r.domain
    if r.kind:
        meta["kind"] = r.kind
    if r.shows:
        meta["shows"] = list(r.shows)
    return {"type": r.expectation, "kwargs": r.kwargs, "description": r.description,
            "meta": meta}


def domain_categories(domain: Domain) -> dict[str, list[str]]:
    """Every configured category, the experience dimension included."""
    return {**domain.categories, DIMENSION_KEY: list(domain.experience_dimensions)}


def domain_parameter(key: str, part: str) -> str:
    """A suite parameter of a domain key: customers.region -> customers__region__values.
    (GX parameter names take letters, digits and underscores only.)"""
    return key.replace(".", "__") + "__" + part


def _number(v: Any) -> int | float:
    """A bound as configured: 10 stays 10 (GX and the messages), 0.5 stays 0.5."""
    f = float(v)
    return int(f) if f.is_integer() else f


def describe_category(column: str, values: list[str]) -> str:
    return f"{column} must be one of {', '.join(values)}"


def describe_scale(column: str, lo: int | float, hi: int | float) -> str:
    return f"{column} must be between {_number(lo)} and {_number(hi)}"


def category_rule(key: str, values: list[str]) -> Rule:
    """``entity.column`` must hold one of the configured values (a suite parameter)."""
    column = key.split(".", 1)[1]
    bad = (f'select * from {{batch}} where "{column}" not in (select value from '
           f"{DOMAIN_CATEGORIES} where domain_key = {literal_in_template(key)})")
    return Rule(f"{column}_allowed", describe_category(column, values),
                "expect_column_values_to_be_in_set",
                {"column": column, "value_set": {"$PARAMETER": domain_parameter(key, "values")}},
                bad, domain=key, kind="category")


def scale_rule(key: str, lo: int | float, hi: int | float) -> Rule:
    """``entity.column`` within its configured [low, high] (suite parameters)."""
    column = key.split(".", 1)[1]
    bad = (f'select b.* from {{batch}} b join {DOMAIN_SCALES} s on s.domain_key = '
           f'{literal_in_template(key)} where b."{column}" not between s.low and s.high')
    return Rule(f"{column}_in_range", describe_scale(column, lo, hi),
                "expect_column_values_to_be_between",
                {"column": column, "min_value": {"$PARAMETER": domain_parameter(key, "min")},
                 "max_value": {"$PARAMETER": domain_parameter(key, "max")}},
                bad, domain=key, kind="scale")


def describe_plausible(column: str, lo: Any, hi: Any) -> str:
    if lo is None:
        return f"{column} must be at most {_number(hi)}"
    if hi is None:
        return f"{column} must be at least {_number(lo)}"
    return f"{column} must be between {_number(lo)} and {_number(hi)}"


def plausible_rule(key: str, lo: Any, hi: Any) -> Rule:
    """``entity.column`` within its plausible [min, max] (either may be open), read from
    ``ops`` by the SQL and given to GX as suite parameters."""
    column = key.split(".", 1)[1]
    bad = (f'select b.* from {{batch}} b join {DOMAIN_PLAUSIBLE} p on p.domain_key = '
           f'{literal_in_template(key)} where b."{column}" < p.low or b."{column}" > p.high')
    return Rule(f"{column}_plausible", describe_plausible(column, lo, hi),
                "expect_column_values_to_be_between",
                {"column": column,
                 "min_value": {"$PARAMETER": domain_parameter(key, "plausible_min")},
                 "max_value": {"$PARAMETER": domain_parameter(key, "plausible_max")}},
                bad, domain=key, kind="plausible", shows=(column,))


def describe_future(column: str, days: int) -> str:
    return f"{column} is more than {days} day(s) after the extract date of its file"


def future_rule(e: Entity, column: str, days: int) -> Rule:
    """A date or timestamp later than its file's extract date + ``max_future_days`` (a
    2999 typo, a clock gone wrong). Timestamps are compared as days of the session's zone,
    which the pipeline sets to the configured ``timezone``."""
    bad = (f'select * from {{batch}} where "{column}"::date > _extract_date + '
           f"(select days from {DOMAIN_FUTURE})")
    return Rule(f"{column}_not_in_future", describe_future(column, days),
                "expect_no_rows_from_query", {"unexpected_rows_query": bad}, bad,
                domain=f"{e.name}.{column}", kind="future", shows=(column,))


def ordered_rule(earlier: str, later: str) -> Rule:
    """``later`` is never before ``earlier`` in a row (end >= start); empty values pass."""
    entity, a = earlier.split(".", 1)
    b = later.split(".", 1)[1]
    return Rule(f"{b}_not_before_{a}", f"{b} is before {a}",
                "expect_column_pair_values_a_to_be_greater_than_b",
                {"column_A": b, "column_B": a, "or_equal": True,
                 "ignore_row_if": "either_value_is_missing"},
                f'select * from {{batch}} where "{b}" < "{a}"',
                domain=f"{entity}.{a}.{b}", kind="ordered", shows=(a, b))


def future_columns(e: Entity) -> list[str]:
    """Dates and timestamps that must not lie ahead of the extract: all but planned ones
    (a term end) and the event time, which has its stricter rule (not after the date)."""
    return [c.name for c in e.columns if c.pg_type in DATE_TYPES and not c.planned
            and c.name != e.event_time]


def domain_rules(e: Entity, domain: Domain) -> list[Rule]:
    """The entity's rules for the configured domain: scales first, then categories, then
    plausibility (ranges, dates not in the future, ordered pairs)."""
    prefix = e.name + "."
    rules = [scale_rule(k, lo, hi) for k, (lo, hi) in domain.scales.items()
             if k.startswith(prefix)]
    rules += [category_rule(k, v) for k, v in domain_categories(domain).items()
              if k.startswith(prefix)]
    rules += [plausible_rule(k, lo, hi) for k, (lo, hi) in domain.plausible.items()
              if k.startswith(prefix)]
    rules += [future_rule(e, c, domain.max_future_days) for c in future_columns(e)]
    rules += [ordered_rule(a, b) for a, b in domain.ordered if a.startswith(prefix)]
    return rules


def store_domain(cur: Any, domain: Domain) -> None:
    """Write the configured domain into the tables the suites' bad-row SQL and
    parameters read (values bound, not spliced)."""
    cur.execute(f"create table if not exists {DOMAIN_CATEGORIES} (domain_key text, "
                "position integer, value text, primary key (domain_key, value))")
    cur.execute(f"create table if not exists {DOMAIN_SCALES} (domain_key text primary key, "
                "low numeric not null, high numeric not null)")
    cur.execute(f"truncate {DOMAIN_CATEGORIES}, {DOMAIN_SCALES}")
    cur.executemany(f"insert into {DOMAIN_CATEGORIES} values (%s, %s, %s)",
                    [(k, i, v) for k, values in domain_categories(domain).items()
                     for i, v in enumerate(values)])
    cur.executemany(f"insert into {DOMAIN_SCALES} values (%s, %s, %s)",
                    [(k, lo, hi) for k, (lo, hi) in domain.scales.items()])
    cur.execute(f"create table if not exists {DOMAIN_PLAUSIBLE} (domain_key text primary key, "
                "low numeric, high numeric)")
    cur.execute(f"create table if not exists {DOMAIN_FUTURE} (days integer not null)")
    cur.execute(f"create table if not exists {DOMAIN_ORDERED} (entity text, earlier text, "
                "later text, primary key (entity, earlier, later))")
    cur.execute(f"truncate {DOMAIN_PLAUSIBLE}, {DOMAIN_FUTURE}, {DOMAIN_ORDERED}")
    cur.executemany(f"insert into {DOMAIN_PLAUSIBLE} values (%s, %s, %s)",
                    [(k, lo, hi) for k, (lo, hi) in domain.plausible.items()])
    cur.execute(f"insert into {DOMAIN_FUTURE} values (%s)", (domain.max_future_days,))
    cur.executemany(f"insert into {DOMAIN_ORDERED} values (%s, %s, %s)",
                    [(a.split(".")[0], a.split(".", 1)[1], b.split(".", 1)[1])
                     for a, b in domain.ordered])


def domain_parameters(cur: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    cur.execute(f"select domain_key, value from {DOMAIN_CATEGORIES} order by domain_key, position")
    for key, value in cur.fetchall():
        params.setdefault(domain_parameter(key, "values"), []).append(value)
    cur.execute(f"select domain_key, low, high from {DOMAIN_SCALES}")
    for key, lo, hi in cur.fetchall():
        params[domain_parameter(key, "min")] = _number(lo)
        params[domain_parameter(key, "max")] = _number(hi)
    cur.execute(f"select to_regclass('{DOMAIN_PLAUSIBLE}') is not null")
    if not cur.fetchone()[0]:  # a warehouse whose domain was stored before plausibility
        return params
    cur.execute(f"select domain_key, low, high from {DOMAIN_PLAUSIBLE}")
    for key, lo, hi in cur.fetchall():
        params[domain_parameter(key, "plausible_min")] = None if lo is None else _number(lo)
        params[domain_parameter(key, "plausible_max")] = None if hi is None else _number(hi)
    cur.execute(f"select days from {DOMAIN_FUTURE}")
    row = cur.fetchone()
    if row:
        params[FUTURE_PARAMETER] = row[0]
    cur.execute(f"select entity, earlier, later from {DOMAIN_ORDERED} order by 1, 2, 3")
    params[ORDERED_PARAMETER] = [".".join(r) for r in cur.fetchall()]
    return params


def configure_suite(suite_json: dict[str, Any], entity: str,
                    parameters: dict[str, Any]) -> dict[str, Any]:
    """The committed suite for this run's domain: each domain rule's message names the
    configured values, a configured key the committed suite has no rule for (a
    company's own categorical, say ``subscriptions.cancel_reason``, or a plausible range
    of ``orders.amount``) gets one, and an ordered pair left out of ``domain.ordered``
    loses its rule."""
    out = {**suite_json, "expectations": []}
    present = set()
    ordered = parameters.get(ORDERED_PARAMETER)
    for exp in suite_json["expectations"]:
        meta = exp.get("meta") or {}
        key, kind = meta.get("domain"), _kind(exp)
        if kind == "plausible" and domain_parameter(key, "plausible_min") not in parameters:
            continue  # the configured range of this column is open: no rule
        if kind == "ordered" and ordered is not None and key not in ordered:
            continue  # a pair left out of the configured list
        if key:
            present.add((kind, key))
            exp = {**exp, "description": _describe(key, exp["type"], kind, parameters,
                                                   exp.get("description"))}
        out["expectations"].append(exp)
    wanted: set[tuple[str, str]] = set()  # (parameter part, key) of configured keys
    for name in parameters:
        head, _, part = name.rpartition("__")
        ent, _, column = head.partition("__")
        if ent == entity and column and part in ("values", "min", "plausible_min"):
            wanted.add((part, f"{ent}.{column}"))
    columns = ENTITIES[entity].column_names
    for part, key in sorted(wanted):
        kind = {"values": "category", "min": "scale", "plausible_min": "plausible"}[part]
        if (kind, key) in present or key.split(".", 1)[1] not in columns:
            continue
        if part == "values":
            rule = category_rule(key, parameters[domain_parameter(key, "values")])
        elif part == "min":
            rule = scale_rule(key, parameters[domain_parameter(key, "min")],
                              parameters[domain_parameter(key, "max")])
        else:
            rule = plausible_rule(key, parameters[domain_parameter(key, "plausible_min")],
                                  parameters[domain_parameter(key, "plausible_max")])
        out["expectations"].append(expectation(rule))
    for pair in ordered or []:
        ent, a, b = pair.split(".")
        if ent == entity and ("ordered", pair) not in present:
            out["expectations"].append(expectation(ordered_rule(f"{ent}.{a}", f"{ent}.{b}")))
    return out


def _kind(exp: dict[str, Any]) -> str | None:
    """The domain rule an expectation is (suites written before ``kind`` lack it)."""
    meta = exp.get("meta") or {}
    if not meta.get("domain"):
        return None
    if meta.get("kind"):
        return meta["kind"]
    return "category" if exp["type"] == "expect_column_values_to_be_in_set" else "scale"


def _describe(key: str, etype: str, kind: str | None, parameters: dict[str, Any],
              default: str | None) -> str:
    column = key.split(".", 1)[1]
    if kind == "plausible":
        return describe_plausible(column, parameters[domain_parameter(key, "plausible_min")],
                                  parameters[domain_parameter(key, "plausible_max")])
    if kind == "future":
        days = parameters.get(FUTURE_PARAMETER)
        return describe_future(column, days) if days is not None else default or column
    if kind == "ordered":
        return default or column
    if etype == "expect_column_values_to_be_in_set":
        values = parameters.get(domain_parameter(key, "values"))
        return describe_category(column, values) if values else default or column
    lo = parameters.get(domain_parameter(key, "min"))
    hi = parameters.get(domain_parameter(key, "max"))
    return describe_scale(column, lo, hi) if lo is not None else default or column
