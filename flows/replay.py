"""Quarantine replay: re-validate quarantined rows after a fix to the suite or reference data.

A catalogue that learns a new touchpoint, or a suite that accepts a new status,
makes rows quarantined last month valid. Replay puts the quarantined rows of
many batches of an entity on one stage and through one validation (GX's fixed
cost is per validation, not per row or batch), then commits batch by batch:
rows that pass move into their batch's partition of ``raw`` keeping their
original lineage, the rest go back to quarantine with today's reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg2
from psycopg2 import sql

from flows.entities import ENTITIES, Entity
from flows.extract import Batch
from flows.failpoints import failpoint
from flows.load import (  # the stage and commit steps ingestion uses
    STAGE_LINEAGE,
    Staged,
    _batch_ref,
    _create_stage,
    _detach,
    _drop_stage,
    _quarantine,
    _stage_ref,
    batch_table,
    text_stage_table,
    validate_staged,
)
from flows.load.ingest import LOCK_TIMEOUT_SECONDS
from flows.mapping import REPLAYABLE
from flows.validate import PARSE, TYPED, GxRunner, load_suite
from flows.warehouse import LINEAGE_COLUMNS, Warehouse
from flows.warehouse.lock import entity_lock


@dataclass
class ReplayResult:
    """What a replay did to one batch's quarantined rows."""

    batch_id: str
    entity: str
    extract_date: date
    source_file: str
    rows: int  # quarantined rows replayed
    moved: int  # now pass: moved to raw
    kept: int  # still failing: back in quarantine with today's reasons
    seconds: float = 0.0


def replay_table(entity: str, batch_id: str) -> str:
    """The table a batch's replayed rows are cast into (its own partition keeps its name)."""
    return batch_table(entity, f"replay_{batch_id}")


def _loaded_batch(wh: Warehouse, batch_id: str) -> Batch:
    from flows.errors import CxloopError

    with wh.transaction() as cur:
        cur.execute("select entity, status, source, extract_date, source_file, content_hash "
                    "from ops.load_batches where batch_id = %s", (batch_id,))
        row = cur.fetchone()
    if row is None:
        raise CxloopError(f"no batch {batch_id!r} in ops.load_batches (see `cxloop batches`)")
    entity, status, source, extract_date, source_file, content_hash = row
    if status == "superseded":
        raise CxloopError(f"batch {batch_id} is superseded: a later delivery of its day "
                          "replaced it, so its quarantined rows are kept for audit only; "
                          "replay the replacing batch (see `cxloop batches`)")
    if status != "loaded":
        raise CxloopError(f"batch {batch_id} is {status}: only loaded batches have quarantined "
                          "rows to replay; a rejected file must be re-delivered")
    return Batch(source=source, entity=entity, extract_date=extract_date,
                 path=Path(source_file), content_hash=content_hash, recorded_id=batch_id)


def batches_to_replay(wh: Warehouse, entity: str, since: date | None = None) -> list[Batch]:
    """The loaded batches of ``entity`` that have quarantined rows, extracted on or after
    ``since``, in extract order."""
    with wh.transaction() as cur:
        cur.execute(sql.SQL(
            "select source, extract_date, source_file, content_hash, batch_id "
            "from ops.load_batches b "
            "where b.entity = %(e)s and b.status = 'loaded' "
            "and (%(since)s::date is null or b.extract_date >= %(since)s) "
            "and exists (select 1 from quarantine.{} q where q._batch_id = b.batch_id) "
            "order by b.extract_date, b.started_at, b.batch_id"
        ).format(sql.Identifier(entity)), {"e": entity, "since": since})
        return [Batch(source=src, entity=entity, extract_date=d, path=Path(f), content_hash=h,
                      recorded_id=b) for src, d, f, h, b in cur.fetchall()]


def replay_quarantine(wh: Warehouse, gx_runner: GxRunner, batch_id: str) -> tuple[int, int]:
    """Re-validate one batch's quarantined rows with today's suite and reference data.

    Returns (moved to raw, still quarantined); see ``replay_batches``.
    """
    batch = _loaded_batch(wh, batch_id)
    [r] = replay_batches(wh, gx_runner, batch.entity, [batch])
    return r.moved, r.kept


def _flag_keys_already_loaded(cur: psycopg2.extensions.cursor, e: Entity, suite: dict,
                              batch_ids: list[str]) -> None:
    """A replayed row whose key its batch already loaded is still a repeat. The suite
    sees only the replayed rows, so this part of key_unique_in_batch is judged here,
    against the batches' partitions of raw."""
    rule = "key_unique_in_batch"
    reason = next((x.get("description") or rule for x in suite["expectations"]
                   if (x.get("meta") or {}).get("rule") == rule), rule)
    same_key = sql.SQL(" and ").join(
        sql.SQL("r.{k} = s.{k}").format(k=sql.Identifier(k)) for k in e.key)
    cur.execute(sql.SQL(
        "insert into _failures select s._batch_id, s._row_number, {rule}, {reason}, {st} "
        "from {stage} s where exists (select 1 from raw.{t} r where r._batch_id = any(%(b)s) "
        "and r._batch_id = s._batch_id and {same_key}) and not exists (select 1 from _failures f "
        "where f.batch_id = s._batch_id and f.row_number = s._row_number and f.rule = {rule} "
        "and f.stage = {st})"
    ).format(rule=sql.Literal(rule), reason=sql.Literal(reason), st=sql.Literal(TYPED),
             stage=_stage_ref(e.name), t=sql.Identifier(e.name), same_key=same_key),
        {"b": batch_ids})


def replay_batches(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                   on_batch: Callable[[ReplayResult], None] | None = None
                   ) -> list[ReplayResult]:
    """Re-validate the quarantined rows of several batches of one entity at once.

    Every batch's rows go onto one stage and through one validation (GX's fixed cost
    is per validation, not per row); then each batch commits alone: rows that pass
    now move to its partition of ``raw`` (keeping their original lineage), the rest
    go back to quarantine with refreshed reasons, and its ``ops.load_batches`` counts
    are updated. A crash leaves each batch either replayed or untouched.
    """
    if not batches:
        return []
    with entity_lock(wh, entity, LOCK_TIMEOUT_SECONDS):  # the stage is the entity's
        return _replay_batches(wh, gx_runner, entity, batches, on_batch)


def _replay_batches(wh: Warehouse, gx_runner: GxRunner, entity: str, batches: list[Batch],
                    on_batch: Callable[[ReplayResult], None] | None) -> list[ReplayResult]:
    e = ENTITIES[entity]
    suite = load_suite(entity)
    ids = [b.batch_id for b in batches]
    started = time.monotonic()
    conn = wh.connect()
    results: list[ReplayResult] = []
    try:
        with conn.cursor() as cur:
            _create_stage(cur, e)
            cols = sql.SQL(", ").join(map(sql.Identifier,
                                          e.raw_column_names + list(STAGE_LINEAGE)))
            values = sql.SQL(", ").join(
                sql.SQL("raw_values ->> {}").format(sql.Literal(c)) for c in e.raw_column_names)
            # Rows the column mapping could not translate stay where they are: the suite
            # does not know the mapping and would judge the untranslated value.
            cur.execute(sql.SQL(
                "insert into raw.{st} ({cols}) select {values}, _batch_id, _source_file, "
                "_row_number, _extract_date from quarantine.{t} where _batch_id = any(%s) "
                "and {r}"
            ).format(st=sql.Identifier(text_stage_table(entity)), cols=cols, values=values,
                     t=sql.Identifier(entity), r=REPLAYABLE), (ids,))
            cur.execute(sql.SQL("select _batch_id, count(*) from raw.{} group by 1").format(
                sql.Identifier(text_stage_table(entity))))
            counts = dict(cur.fetchall())
        conn.commit()
        staged = [Staged(b, counts.get(b.batch_id, 0), PARSE, started) for b in batches]
        validate_staged(conn, gx_runner, e, suite, staged,
                        table_for=lambda s: replay_table(entity, s.batch.batch_id))
        with conn.cursor() as cur:
            _flag_keys_already_loaded(cur, e, suite, ids)
        conn.commit()
        elapsed = time.monotonic() - started  # the shared part, spread over the batches
        for s in staged:
            t0 = time.monotonic()
            b = s.batch.batch_id
            with conn.cursor() as cur:  # one transaction per batch: move, re-quarantine, recount
                cur.execute(sql.SQL("delete from quarantine.{} where _batch_id = %s and {}")
                            .format(sql.Identifier(entity), REPLAYABLE), (b,))
                cur.execute(sql.SQL("select count(*) from quarantine.{} where _batch_id = %s")
                            .format(sql.Identifier(entity)), (b,))
                held = cur.fetchone()[0]  # rows the column mapping could not translate
                table = _batch_ref(replay_table(entity, b))
                replayed_kept = _quarantine(cur, e, s, table)
                moved = s.typed_rows
                if moved + replayed_kept != s.rows_in:
                    raise RuntimeError(f"replay of batch {b}: {s.rows_in} rows replayed but "
                                       f"{moved} moved + {replayed_kept} still quarantined")
                kept = held + replayed_kept
                _detach(cur, e, table)
                # Into the batch's own partition of raw.
                raw_cols = sql.SQL(", ").join(map(sql.Identifier, e.raw_column_names + [
                    n for n, _ in LINEAGE_COLUMNS]))
                cur.execute(sql.SQL("insert into raw.{} ({cols}) select {cols} from {}").format(
                    sql.Identifier(entity), table, cols=raw_cols))
                cur.execute(sql.SQL("drop table {}").format(table))
                cur.execute("update ops.load_batches set rows_loaded = rows_loaded + %s, "
                            "rows_quarantined = %s where batch_id = %s", (moved, kept, b))
            conn.commit()
            failpoint("replay:after-batch-commit")
            r = ReplayResult(b, entity, s.batch.extract_date, str(s.batch.path), s.rows_in,
                             moved, kept, elapsed / len(staged) + time.monotonic() - t0)
            results.append(r)
            if on_batch:
                on_batch(r)
        with conn.cursor() as cur:
            _drop_stage(cur, entity)
        conn.commit()
    finally:
        conn.close()
    return results
