"""``ingest_entity``: stage, validate and commit every new batch of one entity.

The order of one entity's load in a run (what to skip, reinstate, stage, reject,
validate and commit, and the stage's cleanup) in one place; the steps themselves live
in their own modules of this package.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from psycopg2 import sql

# The package: ``_validate_stage`` is looked up on ``flows.load`` at call time, so the
# benchmark that replaces ``flows.load._validate_stage`` to time validation sees it.
from flows import load as _package
from flows.corrections import load_order, reinstatable, reinstate
from flows.entities import ENTITIES, Entity
from flows.extract import Batch
from flows.failpoints import failpoint
from flows.load.commit import _commit_batch
from flows.load.copying import file_error
from flows.load.records import BatchResult, Staged, _record, batch_statuses, rejected_files
from flows.load.stage import stage_batch
from flows.load.tables import _batch_ref, _create_stage, _stage_ref, batch_table, text_stage_table
from flows.readers import count_rows
from flows.validate import TYPED, GxRunner, load_suite
from flows.warehouse import Warehouse

log = logging.getLogger("flows.load")

def ingest_entity(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                  run_id: str, on_batch: Callable[[BatchResult], None] | None = None
                  ) -> list[BatchResult]:
    """Stage, validate and load every new batch of one entity; returns one result per batch."""
    e = ENTITIES[entity]
    results: list[BatchResult] = []
    statuses = batch_statuses(wh, [b.batch_id for b in batches])
    known = {b for b, st in statuses.items() if st != "rejected"}
    # Tried again: rejected before, as this batch or as this file read another way
    # (a fixed mapping gives the same file a new batch id).
    was_rejected = rejected_files(wh, entity, [str(b.path) for b in batches])
    retried = {b.batch_id for b in batches if b.batch_id not in known
               and (statuses.get(b.batch_id) == "rejected" or str(b.path) in was_rejected)}
    todo: list[Batch] = []
    seen: set[str] = set()
    again = {b.batch_id for b in _reinstate(wh, e, [b for b in batches if b.batch_id in known],
                                            run_id, results, on_batch)}
    for b in load_order(batches):
        if b.batch_id in again:
            continue
        if b.batch_id in known or b.batch_id in seen:
            results.append(BatchResult(b.batch_id, b.source, b.entity, b.extract_date,
                                       str(b.path), "skipped"))
            if on_batch:
                on_batch(results[-1])
        else:
            seen.add(b.batch_id)
            todo.append(b)
    if not todo:
        return results
    suite = load_suite(entity)
    conn = wh.connect()
    try:
        staged: list[Staged] = []
        with conn.cursor() as cur:
            _create_stage(cur, e)
            for b in todo:
                started = time.monotonic()
                try:
                    kind, rows = stage_batch(cur, e, b)
                    staged.append(Staged(b, rows, kind, started, rows if kind == TYPED else 0))
                except Exception as exc:
                    err = file_error(b, exc)
                    if err is None:
                        raise
                    log.warning("rejected %s", err)
                    rows_in = count_rows(b)
                    _record(cur, b, "rejected", run_id, rows_in, 0, 0, str(err),
                            time.monotonic() - started)
                    r = BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path),
                                    "rejected", rows_in or 0, error=str(err),
                                    retried=b.batch_id in retried)
                    results.append(r)
                    if on_batch:
                        on_batch(r)
        conn.commit()  # GX reads the stage through its own connection
        if not staged:
            return results
        _package._validate_stage(conn, gx_runner, e, suite, staged)
        for s in staged:
            with conn.cursor() as cur:
                r = _commit_batch(cur, e, s, run_id)
            r.retried = s.batch.batch_id in retried
            conn.commit()  # one transaction per batch
            failpoint("load:after-batch-commit")
            results.append(r)
            if on_batch:
                on_batch(r)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop table {}").format(_stage_ref(entity)))
            cur.execute(sql.SQL("truncate raw.{}").format(
                sql.Identifier(text_stage_table(entity))))
            # Fresh statistics keep dbt's joins over raw on good plans after a load. ONLY
            # (Postgres 18+) samples the parent without re-analysing every partition.
            if conn.server_version >= 180000:
                cur.execute(sql.SQL("analyze only raw.{}").format(sql.Identifier(entity)))
            else:
                for s in staged:
                    cur.execute(sql.SQL("analyze {}").format(
                        _batch_ref(batch_table(entity, s.batch.batch_id))))
        conn.commit()
    finally:
        conn.close()
    return results


def _reinstate(wh: Warehouse, e: Entity, known: list[Batch], run_id: str,
               results: list[BatchResult], on_batch: Callable[[BatchResult], None] | None
               ) -> list[Batch]:
    """Replaced deliveries found again that are current once more (flows/corrections.py),
    one transaction each; their results join ``results``."""
    with wh.transaction() as cur:
        back = reinstatable(cur, known)
    for b in back:
        t0 = time.monotonic()
        with wh.transaction() as cur:
            change = reinstate(cur, e, b, run_id)
            cur.execute("select rows_in, rows_loaded, rows_quarantined from ops.load_batches "
                        "where batch_id = %s", (b.batch_id,))
            rows_in, loaded, quarantined = cur.fetchone()
        results.append(BatchResult(b.batch_id, b.source, b.entity, b.extract_date, str(b.path),
                                   "loaded", rows_in or 0, loaded or 0, quarantined or 0, None,
                                   time.monotonic() - t0, change))
        if on_batch:
            on_batch(results[-1])
    return back
