"""The result of a generation run (:class:`GenerationSummary`).

Why this exists: the CLI, the profiles and the tests all need the same small record of what
was written (window, row counts, where the truth and the fault manifest are), without
importing the generator's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


@dataclass
class GenerationSummary:
    """What ``generate`` wrote, so the CLI can print it and tests can find the files."""

    out: Path
    start: date
    end: date  # last extract date (inclusive)
    days: int
    fmt: str
    customers_base: int  # active at window start
    customers_total: int  # base + new signups in the window
    files: list[str] = field(default_factory=list)  # relative to ``out``, posix
    rows: dict[str, int] = field(default_factory=dict)  # data rows per entity (before faults)
    n_faults: int = 0  # manifest entries (row faults + file faults)
    truth_path: Path | None = None
    truth_customers_path: Path | None = None
    manifest_path: Path | None = None

    @property
    def files_written(self) -> int:
        return len(self.files)
