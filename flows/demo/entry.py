"""The public entry point :func:`generate`: check the arguments, run, write truth and manifest.

Why this exists: callers (CLI, profiles, tests, benchmarks) need one stable function with
the documented layout and guarantees; the machinery behind it may change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from flows.demo.generator import _Generator
from flows.demo.summary import GenerationSummary
from flows.demo.truth import _write_truth


def generate(
    out: Path,
    customers: int = 3000,
    days: int = 120,
    start: date = date(2026, 7, 1),
    seed: int = 7,
    fmt: str = "csv",
    faults: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationSummary:
    """Write ``days`` nightly CRM and survey extracts for a base of ``customers`` into ``out``.

    Layout: ``<out>/<source>/<entity>/<YYYY-MM-DD>/<entity>_<YYYYMMDD>.<csv|parquet>``, one
    file per entity and day (header-only when empty); day 1 carries the full customer and
    subscription base. ``_truth/`` holds the planted model; with ``faults > 0`` a share
    ``faults`` of the rows of each file is broken on purpose plus a few whole files, all
    listed in ``_faults/manifest.csv`` (and ``.json``). Same arguments -> same bytes.
    Files of the window are overwritten; nothing else in ``out`` is deleted, so write a
    shorter window into a fresh folder.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if not 0.0 <= faults < 1.0:
        raise ValueError("faults is a fraction of rows in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = _Generator(out, customers, days, start, seed, fmt, faults)
    summary = g.run(progress)
    summary.truth_path, summary.truth_customers_path = _write_truth(g)
    if faults > 0:
        summary.manifest_path = g.faults.write_manifest(out)
        summary.n_faults = len(g.faults.manifest)
    else:  # a manifest left by an earlier faulty run into ``out`` would now be a lie
        for name in ("manifest.csv", "manifest.json"):
            (out / "_faults" / name).unlink(missing_ok=True)
    return summary
