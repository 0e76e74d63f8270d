"""Reference files: the touchpoint catalogue, the survey items and the owner routing.

They are the other half of a company's domain (the first is ``domain:`` in
``cxloop.yml``): the catalogue declares the touchpoints, each with its channel,
experience dimension and operational KPI (its direction, expectation and
benchmark); the survey items name a touchpoint of the catalogue and a dimension;
the routing table names touchpoints, regions and segments. A file that does not
agree with the others or with ``domain:`` would load and then fail a dbt test
after the data is in ``raw``, so every run checks them first and stops with one
message (exit 2) listing each line that is wrong.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from flows.config import Settings
from flows.errors import ConfigError

# The operational KPIs fct_touchpoint_daily can compute from the interactions extract
# (int_interactions_enriched.kpi_value): a catalogue may name only these.
COMPUTABLE_KPIS = {
    "avg_wait_seconds": "mean wait_seconds",
    "avg_handle_seconds": "mean handle_seconds",
    "fcr_rate": "share resolved at first contact (first_contact_resolution)",
    "resolution_rate": "share resolved (resolved)",
}
CATALOGUE_COLUMNS = (
    "touchpoint_code", "touchpoint_name", "journey_stage", "stage_order", "default_channel",
    "experience_dimension", "owner_team", "is_key_touchpoint", "kpi_name", "kpi_description",
    "kpi_higher_is_better", "kpi_expectation", "kpi_benchmark", "csat_expectation",
    "csat_benchmark", "nps_expectation", "nps_benchmark", "ces_expectation", "ces_benchmark",
)
ITEM_COLUMNS = ("item_code", "touchpoint_code", "experience_dimension", "item_text")
ROUTING_COLUMNS = ("touchpoint_code", "region", "segment", "owner_team", "owner_person",
                   "escalation_owner", "is_fallback")
# How dbt's seed loader (agate) reads a boolean cell.
BOOLEANS = {"true", "false", "t", "f", "yes", "no", "y", "n", "1", "0"}
ANY = "*"
MAX_SHOWN = 20


@dataclass(frozen=True)
class ReferenceCodes:
    """What the suites check codes against: the catalogue's touchpoints, the items."""

    touchpoints: list[str]
    items: list[str]


def _rows(path: Path, key: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a reference CSV, after checking its header."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing and header and header[0].startswith("\ufeff"):
                raise ConfigError(f"{path}: line 1: starts with a byte-order mark; save it "
                                  "as UTF-8 without BOM (\"CSV UTF-8\" adds one in Excel)")
            if missing:
                raise ConfigError(f"{path}: line 1: no column {missing[0]!r} "
                                  f"(the file needs: {', '.join(columns)})")
            rows = []
            for row in reader:
                rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()
                                               if k is not None}))
            return rows
    except FileNotFoundError:
        raise ConfigError(f"reference file {path} is missing "
                          f"(cxloop.yml: reference.{key})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 ({e.reason}); save it as UTF-8") from None


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _catalogue_problems(path: Path, rows: list[tuple[int, dict[str, str]]],
                        settings: Settings) -> list[str]:
    domain = settings.domain
    channels = domain.categories.get("interactions.channel", [])
    dims = domain.experience_dimensions
    out: list[str] = []
    seen: dict[str, int] = {}
    orders: dict[str, int] = {}
    for n, row in rows:
        code = row["touchpoint_code"]
        at = f"{path}: line {n}:"
        if not code:
            out.append(f"{at} touchpoint_code is empty")
        elif code in seen:
            out.append(f"{at} touchpoint_code {code!r} repeats line {seen[code]}")
        else:
            seen[code] = n
        order = row["stage_order"]
        if not order.lstrip("-").isdigit():
            out.append(f"{at} stage_order {order!r} is not a whole number")
        elif order in orders:
            out.append(f"{at} stage_order {order} repeats line {orders[order]}")
        else:
            orders[order] = n
        ch = row["default_channel"]
        if ch and ch not in channels:
            out.append(f"{at} default_channel {ch!r} is not in cxloop.yml "
                       f"domain.categories interactions.channel ({', '.join(channels)})")
        dim = row["experience_dimension"]
        if dim and dim not in dims:
            out.append(f"{at} experience_dimension {dim!r} is not in cxloop.yml "
                       f"domain.experience_dimensions ({', '.join(dims)})")
        if row["is_key_touchpoint"] and row["is_key_touchpoint"].lower() not in BOOLEANS:
            out.append(f"{at} is_key_touchpoint {row['is_key_touchpoint']!r} is not true/false")
        out += _kpi_problems(at, row)
        for col in CATALOGUE_COLUMNS[CATALOGUE_COLUMNS.index("csat_expectation"):]:
            if row[col] and not _number(row[col]):
                out.append(f"{at} {col} {row[col]!r} is not a number")
    return out


def _kpi_problems(at: str, row: dict[str, str]) -> list[str]:
    """A named KPI must be one the pipeline computes, with a direction that agrees with
    its expectation and benchmark. An empty kpi_name is a touchpoint without one."""
    kpi = row["kpi_name"]
    if not kpi:
        return []
    if kpi not in COMPUTABLE_KPIS:
        known = "; ".join(f"{k} ({v})" for k, v in COMPUTABLE_KPIS.items())
        return [f"{at} kpi_name {kpi!r} cannot be computed from the interactions extract; "
                f"use one of: {known}, or leave it empty"]
    out = []
    better = row["kpi_higher_is_better"].lower()
    if better not in BOOLEANS:
        out.append(f"{at} kpi_higher_is_better {row['kpi_higher_is_better']!r} must be "
                   "true or false for kpi_name " + repr(kpi))
    numbers = {}
    for col in ("kpi_expectation", "kpi_benchmark"):
        if not _number(row[col]):
            out.append(f"{at} {col} {row[col]!r} is not a number (kpi_name {kpi!r} needs it)")
        else:
            numbers[col] = float(row[col])
    if not out and numbers["kpi_benchmark"] != numbers["kpi_expectation"]:
        higher = better in ("true", "t", "yes", "y", "1")
        if higher != (numbers["kpi_benchmark"] > numbers["kpi_expectation"]):
            out.append(f"{at} kpi_higher_is_better is {row['kpi_higher_is_better']} but "
                       f"kpi_benchmark {row['kpi_benchmark']} is "
                       f"{'below' if higher else 'above'} kpi_expectation "
                       f"{row['kpi_expectation']}")
    return out


def _item_problems(path: Path, catalogue: Path, rows: list[tuple[int, dict[str, str]]],
                   touchpoints: set[str], settings: Settings) -> list[str]:
    dims = settings.domain.experience_dimensions
    out: list[str] = []
    seen: dict[str, int] = {}
    for n, row in rows:
        at = f"{path}: line {n}:"
        code = row["item_code"]
        if not code:
            out.append(f"{at} item_code is empty")
        elif code in seen:
            out.append(f"{at} item_code {code!r} repeats line {seen[code]}")
        else:
            seen[code] = n
        tp = row["touchpoint_code"]
        if tp not in touchpoints:
            out.append(f"{at} touchpoint_code {tp!r} is not in {catalogue}")
        dim = row["experience_dimension"]
        if dim not in dims:
            out.append(f"{at} experience_dimension {dim!r} is not in cxloop.yml "
                       f"domain.experience_dimensions ({', '.join(dims)})")
    return out


def _routing_problems(path: Path, catalogue: Path, rows: list[tuple[int, dict[str, str]]],
                      touchpoints: set[str], settings: Settings) -> list[str]:
    cats = settings.domain.categories
    out: list[str] = []
    for n, row in rows:
        at = f"{path}: line {n}:"
        tp = row["touchpoint_code"]
        if tp not in touchpoints and tp not in (ANY, "customer"):
            out.append(f"{at} touchpoint_code {tp!r} is not in {catalogue} "
                       "(or '*' for any, 'customer' for customer-level tasks)")
        for col in ("region", "segment"):
            allowed = cats.get(f"customers.{col}", [])
            v = row[col]
            if v and v != ANY and v not in allowed:
                out.append(f"{at} {col} {v!r} is not in cxloop.yml domain.categories "
                           f"customers.{col} ({', '.join(allowed)}) nor '*'")
        if row["is_fallback"] and row["is_fallback"].lower() not in BOOLEANS:
            out.append(f"{at} is_fallback {row['is_fallback']!r} is not true/false")
    return out


def check_reference(settings: Settings) -> ReferenceCodes:
    """Check the configured reference files against each other and ``domain:``.

    Raises one ConfigError listing every line that is wrong (the first ones, if many),
    before anything is loaded; returns the codes the suites check extracts against.
    """
    ref = settings.reference
    catalogue = Path(ref.touchpoint_catalogue)
    items_path, routing_path = Path(ref.survey_items), Path(ref.owner_routing)
    cat_rows = _rows(catalogue, "touchpoint_catalogue", CATALOGUE_COLUMNS)
    item_rows = _rows(items_path, "survey_items", ITEM_COLUMNS)
    routing_rows = _rows(routing_path, "owner_routing", ROUTING_COLUMNS)
    touchpoints = {r["touchpoint_code"] for _, r in cat_rows if r["touchpoint_code"]}
    problems = _catalogue_problems(catalogue, cat_rows, settings)
    item_problems = _item_problems(items_path, catalogue, item_rows, touchpoints, settings)
    problems += item_problems
    problems += _routing_problems(routing_path, catalogue, routing_rows, touchpoints, settings)
    if problems:
        shown = problems[:MAX_SHOWN]
        if len(problems) > MAX_SHOWN:
            shown.append(f"... and {len(problems) - MAX_SHOWN} more")
        hint = ""
        default = type(ref)()
        if item_problems and items_path.resolve() == Path(default.survey_items).resolve() \
                and catalogue.resolve() != Path(default.touchpoint_catalogue).resolve():
            hint = ("\n(reference.survey_items is still the demo's item list: point it at "
                    "the survey items of your own catalogue)")
        raise ConfigError("the reference files do not agree with each other or with "
                          "cxloop.yml domain:\n  " + "\n  ".join(shown) + hint)
    return ReferenceCodes(touchpoints=sorted(touchpoints),
                          items=sorted({r["item_code"] for _, r in item_rows}))
