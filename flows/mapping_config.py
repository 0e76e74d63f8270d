"""Column mapping configuration: ``sources.<source>.mapping.<entity>`` in cxloop.yml.

The keys (rename, constants, values, formats, not_applicable, drop) and every check
that can be made before a file is seen: the entity exists and comes from that source,
targets are contract columns, no target is given twice, a mapped value is valid for its
column's type. ``load_settings`` refuses a configuration with any problem (exit 2), so
nothing is loaded under a mapping that cannot work. flows/mapping.py applies it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.entities import ATTRIBUTES, ENTITIES, Entity

ATTRIBUTE_PREFIX = ATTRIBUTES.name + "."
_YAML_BOOLEAN = ("is a YAML boolean (unquoted yes/no/on/off/true/false): quote it, "
                 "e.g. 'Yes': true")


def _text(v: Any, what: str) -> str | None:
    """A configured value as the text it is compared with or written as."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | str):
        return str(v)
    raise ValueError(f"{what} {v!r} is not a single value")


def _key(k: Any, what: str) -> str:
    """A configured key (a header or a delivered value) as text; YAML booleans refused,
    because ``Yes:`` and ``true:`` both arrive as True and the file holds one of them."""
    if isinstance(k, bool):
        raise ValueError(f"{what} {k!r} {_YAML_BOOLEAN}")
    out = _text(k, what)
    if out is None:
        raise ValueError(f"{what} is empty (null)")
    return out


class EntityMapping(BaseModel):
    """How one source's export of one entity maps onto the contract (all keys optional).

    Keys of ``values``, ``formats`` and ``not_applicable`` are contract columns (after
    ``rename``) or ``attributes.<key>``. Steps per value: not_applicable, then values,
    then formats.
    """

    model_config = ConfigDict(extra="forbid")

    rename: dict[str, str] = Field(default_factory=dict)  # source header -> contract column
    constants: dict[str, str | None] = Field(default_factory=dict)  # column the export lacks
    values: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    formats: dict[str, str] = Field(default_factory=dict)  # strptime, date/timestamp columns
    not_applicable: dict[str, list[str]] = Field(default_factory=dict)  # these become null
    drop: list[str] = Field(default_factory=list)  # source columns left out (personal data)

    @field_validator("rename", mode="before")
    @classmethod
    def _rename(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_key(k, "source column"): _key(t, f"target of {k!r}") for k, t in v.items()}

    @field_validator("constants", mode="before")
    @classmethod
    def _constants(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_key(k, "column"): _text(x, f"constant of {k!r}") for k, x in v.items()}

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for col, table in v.items():
            if not isinstance(table, dict) or not table:
                raise ValueError(f"{col}: expected a map of delivered value -> contract value, "
                                 f"got {table!r}")
            out[_key(col, "column")] = {_key(k, f"{col}: value"): _text(x, f"{col}: {k!r} ->")
                                        for k, x in table.items()}
        return out

    @field_validator("not_applicable", mode="before")
    @classmethod
    def _not_applicable(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for col, items in v.items():
            items = items if isinstance(items, list) else [items]
            out[_key(col, "column")] = [_key(x, f"{col}: value") for x in items]
        return out

    @field_validator("drop", mode="before")
    @classmethod
    def _drop(cls, v: Any) -> Any:
        return [_key(x, "column") for x in v] if isinstance(v, list) else v

    def fingerprint(self) -> str:
        """Part of a mapped batch's identity: a changed mapping reloads the file."""
        dumped = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(dumped.encode()).hexdigest()[:16]


def _check_value(pg_type: str, v: str) -> bool:
    """Would Postgres accept ``v`` for ``pg_type``? For the types a value map targets."""
    base = pg_type.split("(")[0]
    try:
        if base == "integer":
            int(v)
        elif base == "numeric":
            float(v)
        elif base == "boolean":
            return v.strip().lower() in ("true", "false", "t", "f", "yes", "no", "y", "n",
                                         "on", "off", "1", "0")
    except ValueError:
        return False
    return True


def entity_mapping_problems(e: Entity, m: EntityMapping, where: str) -> list[str]:
    """What is wrong with one entity's mapping, each naming its key and value."""
    problems: list[str] = []
    cols = {c.name: c for c in e.columns}
    listing = ", ".join(cols)

    def target_ok(name: str, key: str, attributes_ok: bool = True) -> bool:
        if name in cols or (attributes_ok and name.startswith(ATTRIBUTE_PREFIX)
                            and len(name) > len(ATTRIBUTE_PREFIX)):
            return True
        extra = f" or {ATTRIBUTE_PREFIX}<key>" if attributes_ok else ""
        problems.append(f"{where}.{key}: {name!r} is not a column of {e.name} "
                        f"(columns: {listing}{extra})")
        return False

    targets: dict[str, str] = {}
    for src, tgt in m.rename.items():
        if target_ok(tgt, f"rename.{src}"):
            if tgt in targets:
                problems.append(f"{where}.rename: {targets[tgt]!r} and {src!r} both rename to "
                                f"{tgt!r}; a contract column comes from one source column")
            targets[tgt] = src
        if src in m.drop:
            problems.append(f"{where}.drop: {src!r} is also renamed (rename.{src})")
    for col in m.constants:
        if target_ok(col, f"constants.{col}", attributes_ok=False) and col in targets:
            problems.append(f"{where}.constants.{col}: {col!r} also comes from column "
                            f"{targets[col]!r} (rename); keep one")
    for section in ("values", "not_applicable", "formats"):
        for col in getattr(m, section):
            key = f"{section}.{col}"
            if target_ok(col, key, attributes_ok=section != "formats") and col in m.constants:
                problems.append(f"{where}.{key}: {col!r} is a constant; give the constant "
                                "its final value instead")
    for col, table in m.values.items():
        if col in cols:
            for k, v in table.items():
                if v is not None and not _check_value(cols[col].pg_type, v):
                    problems.append(f"{where}.values.{col}.{k}: {v!r} is not a valid "
                                    f"{cols[col].pg_type} for column {col}")
    for col, fmt in m.formats.items():
        if col in cols and cols[col].pg_type not in ("date", "timestamptz"):
            problems.append(f"{where}.formats.{col}: {col} is a {cols[col].pg_type} column; "
                            "formats apply to date and timestamp columns")
        elif "%" not in fmt:
            problems.append(f"{where}.formats.{col}: {fmt!r} has no strptime directive "
                            "(e.g. %d/%m/%Y)")
    return problems


def mapping_problems(sources: dict[str, Any]) -> list[str]:
    """Every problem of every configured mapping: cxloop.yml is refused before loading."""
    problems = []
    for name, src in sorted(sources.items()):
        queries = getattr(src, "queries", None)
        for ent, m in sorted(getattr(src, "mapping", {}).items()):
            where = f"sources.{name}.mapping.{ent}"
            if ent not in ENTITIES:
                problems.append(f"{where}: unknown entity {ent!r} "
                                f"(known: {', '.join(ENTITIES)})")
                continue
            if queries is not None and ent not in queries:
                problems.append(f"{where}: source {name!r} has no query for {ent!r} "
                                f"(queries: {', '.join(queries) or 'none'})")
            elif queries is None and ENTITIES[ent].source != name:
                problems.append(f"{where}: {ent} files come from source "
                                f"{ENTITIES[ent].source!r}, not {name!r}")
            problems += entity_mapping_problems(ENTITIES[ent], m, where)
    return problems
