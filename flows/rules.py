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
from flows.entities import ENTITIES, Entity

PARSE, TYPED = "parse", "typed"  # the table a rule runs on: text stage or typed batches

# The company's domain (cxloop.yml ``domain:``): each run stores it in these tables
# (``store_domain``) and GX gets it as suite parameters, so the committed suites stay the
# same whatever a company's segments, plans or scales are. The dimension of an item
# rating is a category whose values are ``domain.experience_dimensions``.
DOMAIN_CATEGORIES = "ops.ref_domain_categories"
DOMAIN_SCALES = "ops.ref_domain_scales"
DIMENSION_KEY = "item_ratings.dimension"


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


def literal_in_template(value: str) -> str:
    """A SQL string literal inside a bad-row template, which is filled with str.format
    (as GX fills ``{batch}``): quotes doubled for SQL, braces doubled for format."""
    return "'" + value.replace("'", "''").replace("{", "{{").replace("}", "}}") + "'"


def expectation(r: Rule) -> dict[str, Any]:
    meta = {"rule": r.name, "level": "row", "on": r.on, "bad_rows": r.bad_rows}
    if r.domain:
        meta["domain"] = r.domain
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
                bad, domain=key)


def scale_rule(key: str, lo: int | float, hi: int | float) -> Rule:
    """``entity.column`` within its configured [low, high] (suite parameters)."""
    column = key.split(".", 1)[1]
    bad = (f'select b.* from {{batch}} b join {DOMAIN_SCALES} s on s.domain_key = '
           f'{literal_in_template(key)} where b."{column}" not between s.low and s.high')
    return Rule(f"{column}_in_range", describe_scale(column, lo, hi),
                "expect_column_values_to_be_between",
                {"column": column, "min_value": {"$PARAMETER": domain_parameter(key, "min")},
                 "max_value": {"$PARAMETER": domain_parameter(key, "max")}},
                bad, domain=key)


def domain_rules(e: Entity, domain: Domain) -> list[Rule]:
    """The entity's rules for the configured domain: scales first, then categories."""
    prefix = e.name + "."
    rules = [scale_rule(k, lo, hi) for k, (lo, hi) in domain.scales.items()
             if k.startswith(prefix)]
    rules += [category_rule(k, v) for k, v in domain_categories(domain).items()
              if k.startswith(prefix)]
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


def domain_parameters(cur: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    cur.execute(f"select domain_key, value from {DOMAIN_CATEGORIES} order by domain_key, position")
    for key, value in cur.fetchall():
        params.setdefault(domain_parameter(key, "values"), []).append(value)
    cur.execute(f"select domain_key, low, high from {DOMAIN_SCALES}")
    for key, lo, hi in cur.fetchall():
        params[domain_parameter(key, "min")] = _number(lo)
        params[domain_parameter(key, "max")] = _number(hi)
    return params


def configure_suite(suite_json: dict[str, Any], entity: str,
                    parameters: dict[str, Any]) -> dict[str, Any]:
    """The committed suite for this run's domain: each domain rule's message names the
    configured values, and a configured key the committed suite has no rule for (a
    company's own categorical, say ``subscriptions.cancel_reason``) gets one."""
    out = {**suite_json, "expectations": []}
    present = set()
    for exp in suite_json["expectations"]:
        meta = exp.get("meta") or {}
        key = meta.get("domain")
        if key:
            present.add(key)
            exp = {**exp, "description": _describe(key, exp["type"], parameters,
                                                   exp.get("description"))}
        out["expectations"].append(exp)
    wanted: dict[str, str] = {}
    for name in parameters:
        head, _, part = name.rpartition("__")
        ent, _, column = head.partition("__")
        if ent == entity and column and part in ("values", "min"):
            wanted[f"{ent}.{column}"] = part
    for key, part in sorted(wanted.items()):
        if key in present or key.split(".", 1)[1] not in ENTITIES[entity].column_names:
            continue
        if part == "values":
            rule = category_rule(key, parameters[domain_parameter(key, "values")])
        else:
            rule = scale_rule(key, parameters[domain_parameter(key, "min")],
                              parameters[domain_parameter(key, "max")])
        out["expectations"].append(expectation(rule))
    return out


def _describe(key: str, kind: str, parameters: dict[str, Any], default: str | None) -> str:
    column = key.split(".", 1)[1]
    if kind == "expect_column_values_to_be_in_set":
        values = parameters.get(domain_parameter(key, "values"))
        return describe_category(column, values) if values else default or column
    lo = parameters.get(domain_parameter(key, "min"))
    hi = parameters.get(domain_parameter(key, "max"))
    return describe_scale(column, lo, hi) if lo is not None else default or column
