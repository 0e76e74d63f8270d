"""The strict base of every ``cxloop.yml`` section model.

One class, in its own module, so the section modules (domain, analysis, alerts) and
``flows/config.py`` share it without importing one another: an unknown key anywhere
in ``cxloop.yml`` is an error (``extra="forbid"``), never silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
