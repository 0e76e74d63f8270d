"""Where validate + load spends its time: per SQL statement kind, per step, per batch.

A fresh ingest of a landing's dates (as benchmarks/copy_baseline.py runs it), with every
statement the load's own connections execute timed by kind (COPY, lineage ALTERs,
ATTACH/DETACH, quarantine queries, the ``ops.load_batches`` record, supersede look-ups,
ANALYZE, commits) and the GX validations timed apart. Per entity, the commit step's
seconds per batch early and late in the run show whether catalogue growth (thousands
of partitions) makes each batch dearer.

    python -m benchmarks.ingest_profile --landing /work/scale/l100k \\
        --start 2025-01-01 --end 2025-12-31 [--home DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg2
import psycopg2.extensions

SECONDS: dict[str, float] = collections.defaultdict(float)
COUNTS: dict[str, int] = collections.defaultdict(int)

_KINDS = [  # (pattern on the lower-cased statement, kind); first match wins
    (r"^copy ", "copy"),
    (r"attach partition", "attach partition"),
    (r"detach partition", "detach partition"),
    (r"drop default", "drop lineage defaults"),
    (r"add column _batch_id", "add lineage columns"),
    (r"set default", "set text-stage defaults"),
    (r"^insert into ops\.load_batches", "record batch"),
    (r"^select exists \(select 1 from _failures", "quarantine: any failures?"),
    (r"^insert into quarantine", "quarantine: insert"),
    (r"^delete from .* using _failures", "quarantine: delete"),
    (r"^insert into _failures", "collect failures"),
    (r"from ops\.load_batches where source = ", "supersede: look-up"),
    (r"^analyze", "analyze"),
    (r"^(savepoint|release|rollback to)", "savepoints"),
    (r"^alter sequence", "restart row counter"),
    (r"^select set_config\('timezone'", "source zone"),
    (r"^(create|drop) ", None),  # named by its first words (which table)
]


def kind_of(statement: str) -> str:
    s = " ".join(statement.split()).lower()
    for pattern, kind in _KINDS:
        if re.search(pattern, s):
            return kind or " ".join(re.sub(r'"[^"]*"', "<name>", s).split()[:5])
    return "other: " + s[:50]


class TimedCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
        text = (query if isinstance(query, str) else query.decode() if isinstance(query, bytes)
                else query.as_string(self.connection))
        t0 = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:
            k = "sql: " + kind_of(text)
            SECONDS[k] += time.perf_counter() - t0
            COUNTS[k] += 1

    def copy_expert(self, sql, file, size=8192):
        t0 = time.perf_counter()
        try:
            return super().copy_expert(sql, file, size)
        finally:
            SECONDS["sql: copy"] += time.perf_counter() - t0
            COUNTS["sql: copy"] += 1


class TimedConnection(psycopg2.extensions.connection):
    def cursor(self, *a, **k):
        k.setdefault("cursor_factory", TimedCursor)
        return super().cursor(*a, **k)

    def commit(self):
        t0 = time.perf_counter()
        try:
            return super().commit()
        finally:
            SECONDS["commit"] += time.perf_counter() - t0
            COUNTS["commit"] += 1


def _timed(owner: object, name: str, label: str, per_call: list | None = None) -> None:
    fn = getattr(owner, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t0
            SECONDS[label] += dt
            COUNTS[label] += 1
            if per_call is not None:  # (entity, seconds): a step's args are (cur, e, ...)
                ent = getattr(a[1], "name", "") if len(a) > 1 else ""
                per_call.append((ent, dt))

    setattr(owner, name, wrapper)


def instrument() -> dict[str, list[float]]:
    """Wrap the load's steps; returns the per-call seconds of each batch's commit."""
    import flows.load as load
    import flows.load.ingest as ingest
    import flows.load.validation as validation
    import flows.warehouse.connection as connection
    from flows.validate import GxRunner

    real_connect = psycopg2.connect

    def connect(*a, **k):
        k.setdefault("connection_factory", TimedConnection)
        return real_connect(*a, **k)

    connection.psycopg2.connect = connect  # the warehouse's connections (not GX's engine)
    per_batch: dict[str, list] = {"commit": [], "stage_batch": []}
    _timed(ingest, "stage_batch", "step: stage (per batch)", per_batch["stage_batch"])
    # The commit unit: one month's batches of an entity (one batch before grouping).
    unit = "_commit_group" if hasattr(ingest, "_commit_group") else "_commit_batch"
    _timed(ingest, unit, f"step: commit ({unit})", per_batch["commit"])
    _timed(load, "_validate_stage", "step: validate (per entity)")
    _timed(GxRunner, "validate", "gx: checkpoint run")
    _timed(validation, "_collect_failures", "step: collect failures")
    _timed(load, "supersede", "step: supersede")
    return per_batch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest_profile")
    ap.add_argument("--landing", required=True)
    ap.add_argument("--start", required=True, type=date.fromisoformat)
    ap.add_argument("--end", required=True, type=date.fromisoformat)
    ap.add_argument("--home", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="cxloop-ingest-profile-"))
    per_batch = instrument()
    from benchmarks.copy_baseline import cxloop_ingest

    res = cxloop_ingest(home, args.landing, args.start, args.end, "cxloop_bench_profile")
    out = {"ingest": res,
           "seconds": {k: round(v, 2) for k, v in sorted(SECONDS.items(), key=lambda x: -x[1])},
           "calls": dict(COUNTS), "per_batch_ms": {}}
    for step, calls in per_batch.items():
        for ent in dict.fromkeys(e for e, _ in calls):
            mine = [dt for e, dt in calls if e == ent]
            tenth = max(1, len(mine) // 10)
            out["per_batch_ms"][f"{step} {ent}"] = {
                "n": len(mine), "first_tenth": round(1000 * sum(mine[:tenth]) / tenth, 1),
                "last_tenth": round(1000 * sum(mine[-tenth:]) / tenth, 1)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
