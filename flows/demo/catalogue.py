"""The touchpoint and survey-item catalogue the demo generates against, read from the seeds.

Why this exists: the dbt seeds are the one source of touchpoint codes and survey items; the
generator reads them rather than repeating them, so the marts and the extracts agree.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from flows.demo.params import SEEDS_DIR, TP_PARAMS


@dataclass(frozen=True)
class _Catalogue:
    """Touchpoints and survey items read from the dbt seeds (the single source of codes)."""

    codes: tuple[str, ...]  # in stage order
    items: tuple[str, ...]  # item_code per touchpoint
    dimensions: tuple[str, ...]  # item dimension per touchpoint
    names: tuple[str, ...]

    def index(self, code: str) -> int:
        return self.codes.index(code)


def load_catalogue(seeds_dir: Path = SEEDS_DIR) -> _Catalogue:
    """Read the touchpoint catalogue and survey items; fail loudly if they disagree."""
    with open(seeds_dir / "touchpoint_catalogue.csv", newline="", encoding="utf-8") as f:
        tps = sorted(csv.DictReader(f), key=lambda r: int(r["stage_order"]))
    with open(seeds_dir / "survey_items.csv", newline="", encoding="utf-8") as f:
        items = {r["touchpoint_code"]: r for r in csv.DictReader(f)}
    codes = tuple(r["touchpoint_code"] for r in tps)
    missing = [c for c in codes if c not in items or c not in TP_PARAMS]
    if missing:
        raise ValueError(f"touchpoints without a survey item or demo parameters: {missing}")
    return _Catalogue(
        codes=codes,
        items=tuple(items[c]["item_code"] for c in codes),
        dimensions=tuple(items[c]["experience_dimension"] for c in codes),
        names=tuple(r["touchpoint_name"] for r in tps),
    )
