"""Committing a batch: quarantine, detach from the stage, attach to ``raw``, record.

One transaction per batch: a crash leaves a batch wholly loaded and recorded in
``ops.load_batches`` or not at all. A re-delivered day replaces the earlier batch in
that same transaction (flows/corrections.py).
"""

from __future__ import annotations

import time

import psycopg2
from psycopg2 import sql

# The package, not flows.corrections: ``supersede`` is looked up on ``flows.load`` at
# call time, so a benchmark that replaces ``flows.load.supersede`` times the real call.
from flows import load as _package
from flows.entities import Entity
from flows.load.quarantine import _quarantine
from flows.load.records import BatchResult, Staged, _record
from flows.load.tables import _attach, _batch_ref, _stage_ref, batch_table


def _detach(cur: psycopg2.extensions.cursor, e: Entity, table: sql.Composed) -> None:
    """Off the stage, without the stage's defaults: what stays is a plain batch table."""
    # Rows keep their stored values; only the defaults for future inserts go.
    cur.execute(sql.SQL("alter table {} alter column _batch_id drop default, "
                        "alter column _source_file drop default, "
                        "alter column _row_number drop default, "
                        "alter column _extract_date drop default").format(table))
    cur.execute(sql.SQL("alter table {} detach partition {}").format(_stage_ref(e.name), table))


def _commit_batch(cur: psycopg2.extensions.cursor, e: Entity, s: Staged,
                  run_id: str) -> BatchResult:
    batch = s.batch
    table = _batch_ref(batch_table(e.name, batch.batch_id))
    quarantined = _quarantine(cur, e, s, table)
    loaded = s.typed_rows
    if loaded + quarantined != s.rows_in:
        raise RuntimeError(f"{batch.path}: {s.rows_in} rows in but {loaded} loaded + "
                           f"{quarantined} quarantined")
    _detach(cur, e, table)
    _attach(cur, sql.SQL("raw.{}").format(sql.Identifier(e.name)), table, batch.batch_id)
    seconds = time.monotonic() - s.started
    _record(cur, batch, "loaded", run_id, s.rows_in, loaded, quarantined, None, seconds)
    # A re-delivery of the entity's day (by the source's rule) replaces the earlier batch:
    # its rows leave raw in this same transaction (flows/corrections.py).
    change = _package.supersede(cur, e, batch, run_id)
    return BatchResult(batch.batch_id, batch.source, batch.entity, batch.extract_date,
                       str(batch.path), "loaded", s.rows_in, loaded, quarantined, None, seconds,
                       change)
