"""``ingest_entity``: stage, validate and commit every new batch of one entity.

The order of one entity's load in a run (what to skip, reinstate, stage, reject,
validate and commit, and the stage's cleanup) in one place; the steps themselves live
in their own modules of this package.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg2
from psycopg2 import sql

# The package: ``_validate_stage`` is looked up on ``flows.load`` at call time, so the
# benchmark that replaces ``flows.load._validate_stage`` to time validation sees it.
from flows import load as _package
from flows.corrections import load_order, reinstatable, reinstate
from flows.entities import ENTITIES, Entity
from flows.extract import Batch
from flows.failpoints import failpoint
from flows.load.commit import Group, _commit_group
from flows.load.copying import file_error
from flows.load.quarantine import failing_batches
from flows.load.records import BatchResult, Staged, _record, batch_statuses, rejected_files
from flows.load.stage import stage_batch
from flows.load.tables import (
    _attach_many,
    _batch_ref,
    _create_group_table,
    _create_stage,
    _drop_stage,
    _stage_ref,
    batch_table,
    group_key,
    group_table,
    narrow_group_check,
)
from flows.readers import count_rows
from flows.validate import TYPED, GxRunner, load_suite
from flows.warehouse import Warehouse
from flows.warehouse.lock import entity_lock

log = logging.getLogger("flows.load")

# How long a load waits for another load or replay of the same entity (entity_lock).
LOCK_TIMEOUT_SECONDS = 600.0


def ingest_entity(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                  run_id: str, on_batch: Callable[[BatchResult], None] | None = None,
                  lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> list[BatchResult]:
    """Stage, validate and load every new batch of one entity; returns one result per batch.

    Under the entity's lock: loads of different entities may run side by side (parallel
    workers), two of the same entity wait for each other (they share its stage)."""
    with entity_lock(wh, entity, lock_timeout):
        return _ingest_entity(wh, gx_runner, entity, batches, run_id, on_batch)


def _ingest_entity(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                   run_id: str, on_batch: Callable[[BatchResult], None] | None
                   ) -> list[BatchResult]:
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
        groups: list[Group] = []
        with conn.cursor() as cur:
            _create_stage(cur, e)
            for chunk in months(todo):
                groups.append(_stage_group(cur, e, chunk, run_id, retried, results, on_batch))
        conn.commit()  # GX reads the stage through its own connection
        groups = [g for g in groups if g.members]
        staged = [s for g in groups for s in g.members]
        if not staged:
            return results
        _package._validate_stage(conn, gx_runner, e, suite, staged)
        with conn.cursor() as cur:
            failing = failing_batches(cur)
        for g in groups:
            with conn.cursor() as cur:
                done = _commit_group(cur, e, g, run_id, failing)
            conn.commit()  # one transaction per month's batches, each all or nothing
            failpoint("load:after-batch-commit")
            for r in done:
                r.retried = r.batch_id in retried
                results.append(r)
                if on_batch:
                    on_batch(r)
        with conn.cursor() as cur:
            _drop_stage(cur, entity)
            # Fresh statistics keep dbt's joins over raw on good plans after a load, once
            # per entity and run. ONLY (Postgres 18+) samples the parent without
            # re-analysing every partition.
            if conn.server_version >= 180000:
                cur.execute(sql.SQL("analyze only raw.{}").format(sql.Identifier(entity)))
            else:
                for g in groups:
                    names = [g.table] if g.table else []
                    names += [batch_table(entity, s.batch.batch_id) for s in g.members
                              if s.kind != TYPED]
                    for name in names:
                        cur.execute(sql.SQL("analyze {}").format(_batch_ref(name)))
        conn.commit()
    finally:
        conn.close()
    return results


# At most this many batches share a group table: the partition bound's list stays short
# enough for Postgres to see the table's CHECK imply it (it expands up to 100 values).
GROUP_MAX = 100


def months(todo: list[Batch]) -> list[list[Batch]]:
    """The new batches, in load order, cut into runs of one month (at most GROUP_MAX)."""
    out: list[list[Batch]] = []
    for b in todo:
        if out and group_key(out[-1][0]) == group_key(b) and len(out[-1]) < GROUP_MAX:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def _stage_group(cur: psycopg2.extensions.cursor, e: Entity, chunk: list[Batch], run_id: str,
                 retried: set[str], results: list[BatchResult],
                 on_batch: Callable[[BatchResult], None] | None) -> Group:
    """COPY one month's new batches into one table on the stage; a file that is broken
    is rejected alone (recorded, its result added), one with values that do not parse
    goes to the text stage."""
    name = group_table(e.name, chunk)
    table = _create_group_table(cur, e, name, [b.batch_id for b in chunk])
    g = Group(name)
    for b in chunk:
        started = time.monotonic()
        try:
            kind, rows = stage_batch(cur, e, b, table)
            g.members.append(Staged(b, rows, kind, started, rows if kind == TYPED else 0))
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
    typed = [s.batch.batch_id for s in g.typed]
    if not typed:
        cur.execute(sql.SQL("drop table {}").format(table))
        g.table = None
        return g
    if len(typed) < len(chunk):
        narrow_group_check(cur, table, typed)
    _attach_many(cur, _stage_ref(e.name), table, typed)
    return g


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
