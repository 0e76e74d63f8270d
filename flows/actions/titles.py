"""Task titles from a rule's template, and JSON-ready values."""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.actions.rules import Rule

log = logging.getLogger(__name__)


def jsonable(v: Any) -> Any:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if hasattr(v, "__float__") and not isinstance(v, (int, float, bool)):
        return float(v)
    return v


def title(rule: Rule, values: dict[str, Any]) -> str:
    """The rule's title over a candidate's evidence; a null must not fail the whole run."""
    values = {k: jsonable(v) for k, v in values.items()}
    try:
        return rule.title.format(**values)
    except (KeyError, ValueError, TypeError, IndexError):
        safe = {k: (float("nan") if v is None else v) for k, v in values.items()}
        try:
            return rule.title.format(**safe)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            log.warning("rule %s: title template failed (%s); using a plain title", rule.name, e)
            return f"{rule.name}: {values.get('subject_id')}"
