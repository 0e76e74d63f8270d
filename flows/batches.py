"""Batches after the fact: reconcile every row from ``ops``, retry rejected files.

Reconciliation answers "did every delivered row end up somewhere?" per entity and
extract date: rows in files = rows loaded + rows quarantined + rows in rejected
files. The figures come from ``ops.load_batches`` (a rejected batch records the rows
it held when they can be counted), and each loaded batch is checked against what
``raw`` and ``quarantine`` actually hold, so a record that drifted from the tables
shows up too.

Retry re-attempts rejected batches with today's configuration (encoding,
delimiter, mapping) and today's file, under the run lock, the way a run would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from psycopg2 import sql

from flows.config import FileSource, Settings
from flows.entities import ENTITIES
from flows.errors import CxloopError
from flows.warehouse import Warehouse


@dataclass
class BatchRow:
    """One ``ops.load_batches`` record with the rows the warehouse holds for it."""

    batch_id: str
    entity: str
    extract_date: date
    status: str
    source_file: str
    rows_in: int | None
    rows_loaded: int
    rows_quarantined: int
    in_raw: int
    in_quarantine: int
    resolved: bool = False  # rejected, but the same file loaded later


@dataclass
class Balance:
    """Rows of one entity on one extract date, by where they went."""

    entity: str
    extract_date: date
    files: int = 0
    rows_in: int = 0
    loaded: int = 0
    quarantined: int = 0
    rejected_rows: int = 0
    rejected_files: int = 0
    uncountable: list[str] = field(default_factory=list)  # rejected files with no row count
    superseded: int = 0  # batches replaced by a later delivery: not counted above
    problems: list[str] = field(default_factory=list)  # records that disagree with tables

    @property
    def unaccounted(self) -> int:
        return self.rows_in - self.loaded - self.quarantined - self.rejected_rows

    @property
    def balanced(self) -> bool:
        return self.unaccounted == 0 and not self.problems


def batch_rows(wh: Warehouse, entity: str, since: date | None = None) -> list[BatchRow]:
    """Every record of ``entity`` (extracted on or after ``since``) with its table counts."""
    t = sql.Identifier(entity)
    with wh.transaction() as cur:
        cur.execute(sql.SQL(
            "with r as (select _batch_id, count(*) as n from raw.{t} group by 1), "
            "q as (select _batch_id, count(*) as n from quarantine.{t} group by 1) "
            "select b.batch_id, b.entity, b.extract_date, b.status, b.source_file, b.rows_in, "
            "coalesce(b.rows_loaded, 0), coalesce(b.rows_quarantined, 0), "
            "coalesce(r.n, 0), coalesce(q.n, 0), "
            # A rejected file that loaded later (after a fix, or with a new mapping and so
            # a new batch id) is resolved: its rows are counted once, as loaded.
            "b.status = 'rejected' and exists (select 1 from ops.load_batches l "
            "  where l.entity = b.entity and l.extract_date = b.extract_date "
            "  and l.source_file = b.source_file and l.status <> 'rejected' "
            "  and l.started_at >= b.started_at) "
            "from ops.load_batches b left join r on r._batch_id = b.batch_id "
            "left join q on q._batch_id = b.batch_id "
            "where b.entity = %(e)s and (%(since)s::date is null or b.extract_date >= %(since)s) "
            "order by b.extract_date, b.started_at"
        ).format(t=t), {"e": entity, "since": since})
        return [BatchRow(*r) for r in cur.fetchall()]


def balance(rows: Iterable[BatchRow]) -> list[Balance]:
    """Per (entity, date): the rows of the current deliveries and where they went."""
    out: dict[tuple[str, date], Balance] = {}
    for r in rows:
        b = out.setdefault((r.entity, r.extract_date), Balance(r.entity, r.extract_date))
        name = Path(r.source_file).name
        if r.status == "rejected":
            if r.resolved:
                continue
            b.files += 1
            b.rejected_files += 1
            if r.rows_in is None:
                b.uncountable.append(name)
            else:
                b.rows_in += r.rows_in
                b.rejected_rows += r.rows_in
            if r.in_raw or r.in_quarantine:
                b.problems.append(f"{name} (batch {r.batch_id}) is rejected but raw holds "
                                  f"{r.in_raw} and quarantine {r.in_quarantine} of its rows")
        elif r.status == "loaded":
            b.files += 1
            b.rows_in += r.rows_in or 0
            b.loaded += r.rows_loaded
            b.quarantined += r.rows_quarantined
            if r.in_raw != r.rows_loaded:
                b.problems.append(f"{name} (batch {r.batch_id}): ops records {r.rows_loaded} "
                                  f"rows loaded, raw holds {r.in_raw}")
            if r.in_quarantine != r.rows_quarantined:
                b.problems.append(f"{name} (batch {r.batch_id}): ops records "
                                  f"{r.rows_quarantined} rows quarantined, quarantine holds "
                                  f"{r.in_quarantine}")
        else:  # superseded (or another state a later delivery put it in): not current
            b.superseded += 1
            if r.rows_in is not None and r.rows_in != r.rows_loaded + r.rows_quarantined:
                b.problems.append(f"{name} (batch {r.batch_id}, {r.status}): {r.rows_in} rows "
                                  f"in but {r.rows_loaded} loaded + {r.rows_quarantined} "
                                  "quarantined")
    return sorted(out.values(), key=lambda b: (b.extract_date, b.entity))


def reconcile(wh: Warehouse, entity: str | None = None,
              since: date | None = None) -> list[Balance]:
    """The balance of every entity (or one) and extract date (on or after ``since``)."""
    names = [entity] if entity else list(ENTITIES)
    rows: list[BatchRow] = []
    for name in names:
        rows += batch_rows(wh, name, since)
    return balance(rows)


def rejected_batch_ids(wh: Warehouse) -> list[str]:
    """Rejected batches not resolved by a later load of the same file."""
    return [r.batch_id for name in ENTITIES for r in batch_rows(wh, name)
            if r.status == "rejected" and not r.resolved]


def batches_for_retry(wh: Warehouse, settings: Settings, batch_ids: list[str]
                      ) -> tuple[list, list[str]]:
    """Today's batches of the files behind these rejected records, and what cannot be
    retried (unknown id, not rejected, a SQL source, a file that is gone)."""
    from flows.extract import Batch, file_hash

    with wh.transaction() as cur:
        cur.execute("select batch_id, status, source, entity, extract_date, source_file "
                    "from ops.load_batches where batch_id = any(%s)", (batch_ids,))
        found = {r[0]: r for r in cur.fetchall()}
    out: list[Batch] = []
    problems: list[str] = []
    for bid in batch_ids:
        rec = found.get(bid)
        if rec is None:
            problems.append(f"{bid}: no such batch in ops.load_batches (see `cxloop batches`)")
            continue
        _, status, source, entity, day, source_file = rec
        if status != "rejected":
            problems.append(f"{bid}: {status}, not rejected: nothing to retry")
            continue
        src = settings.sources.get(source)
        path = Path(source_file)
        if not isinstance(src, FileSource):
            problems.append(f"{bid}: source {source} is not a file source in cxloop.yml; "
                            "run the date again to re-query it")
            continue
        if not path.is_file():
            problems.append(f"{bid}: {path} is gone; re-deliver it and run {day} again")
            continue
        out.append(Batch(source, entity, day, path, file_hash(path), src.encoding,
                         src.delimiter, mapping=src.mapping.get(entity)))
    return out, problems


def retry(wh: Warehouse, settings: Settings, batch_ids: list[str]) -> tuple[list, list[str]]:
    """Re-attempt rejected batches now, under the run lock; returns the load results
    and the ids that could not be retried (with why). Marts are rebuilt by the next run."""
    from flows import load
    from flows.validate import GxRunner
    from flows.warehouse import run_lock

    run_id = f"retry-{uuid.uuid4().hex[:8]}"
    with run_lock(wh, settings.lock_timeout_seconds, run_id):
        load.refresh_reference(wh, settings)
        todo, problems = batches_for_retry(wh, settings, batch_ids)
        if not todo:
            return [], problems
        gx = GxRunner(Path(settings.home), wh.sqlalchemy_url())
        results = []
        for name in ENTITIES:
            mine = [b for b in todo if b.entity == name]
            if mine:
                results += load.ingest_entity(wh, gx, name, mine, run_id)
    return results, problems


def check_entity(entity: str | None) -> None:
    if entity is not None and entity not in ENTITIES:
        raise CxloopError(f"--entity {entity!r}: not an entity; known: {', '.join(ENTITIES)}")
