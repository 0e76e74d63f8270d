"""The strict base of every ``cxloop.yml`` section model.

One class, in its own module, so the section modules (domain, analysis, alerts) and
``flows/config.py`` share it without importing one another: an unknown key anywhere
in ``cxloop.yml`` is an error (``extra="forbid"``), never silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from flows.entities import ENTITIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def known_entities(v: list[str]) -> list[str]:
    """A field validator's body for a list of entity names: each one is in the contract."""
    unknown = [e for e in v if e not in ENTITIES]
    if unknown:
        raise ValueError(f"unknown entit{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(map(repr, unknown))}; known: {', '.join(ENTITIES)}")
    return v
