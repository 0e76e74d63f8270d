"""What a load records about each batch: the result types and ``ops.load_batches``.

The run's summary, the rule that a re-run skips what is recorded and the retry of
rejected files all read or write the same record; keeping them together keeps that
rule in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg2

from flows.corrections import Change
from flows.extract import Batch
from flows.warehouse import Warehouse


@dataclass
class BatchResult:
    """What happened to one batch in this run."""

    batch_id: str
    source: str
    entity: str
    extract_date: date
    source_file: str
    status: str  # loaded | rejected | skipped
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    seconds: float = 0.0
    change: Change | None = None  # set when the batch replaced an earlier delivery
    # Tried again because an earlier attempt rejected it (a rejected batch is never
    # "skipped"): the summary tells these apart from batches skipped as unchanged.
    retried: bool = False


@dataclass
class Staged:
    """A batch on the stage: COPYed typed, or as text because some values did not parse."""

    batch: Batch
    rows_in: int
    kind: str  # TYPED | PARSE
    started: float
    typed_rows: int = 0  # rows in its typed table


def known_batches(wh: Warehouse, batch_ids: list[str]) -> set[str]:
    """Batches already dealt with, which a run skips. A rejected batch is not among them:
    its file is tried again on every run, so a fix in cxloop.yml (an encoding, a
    delimiter, a mapping) loads it without re-delivering the file."""
    return {b for b, st in batch_statuses(wh, batch_ids).items() if st != "rejected"}


def batch_statuses(wh: Warehouse, batch_ids: list[str]) -> dict[str, str]:
    """The recorded status of each of these batches that has a record."""
    if not batch_ids:
        return {}
    with wh.transaction() as cur:
        cur.execute("select batch_id, status from ops.load_batches where batch_id = any(%s)",
                    (batch_ids,))
        return dict(cur.fetchall())


def rejected_files(wh: Warehouse, entity: str, paths: list[str]) -> set[str]:
    """Which of these files of ``entity`` have a rejected batch on record."""
    if not paths:
        return set()
    with wh.transaction() as cur:
        cur.execute("select distinct source_file from ops.load_batches where entity = %s "
                    "and status = 'rejected' and source_file = any(%s)", (entity, paths))
        return {r[0] for r in cur.fetchall()}


# The insert of batch records, for one (``_record``) or many (``execute_values``).
RECORD_SQL = (
    "insert into ops.load_batches (batch_id, source, entity, extract_date, source_file, "
    "content_hash, rows_in, rows_loaded, rows_quarantined, status, error, run_id, "
    "started_at, finished_at, seconds) values %s on conflict (batch_id) do update "
    # Only a rejected batch is tried again; its record then tells the latest attempt.
    "set rows_in = excluded.rows_in, rows_loaded = excluded.rows_loaded, "
    "rows_quarantined = excluded.rows_quarantined, status = excluded.status, "
    "error = excluded.error, run_id = excluded.run_id, started_at = excluded.started_at, "
    "finished_at = excluded.finished_at, seconds = excluded.seconds "
    "where ops.load_batches.status = 'rejected'")
RECORD_TEMPLATE = ("(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                   "now() - make_interval(secs => %s), now(), %s)")


def _record(cur: psycopg2.extensions.cursor, batch: Batch, status: str, run_id: str,
            rows_in: int | None, loaded: int | None, quarantined: int | None,
            error: str | None, seconds: float) -> None:
    cur.execute(
        RECORD_SQL.replace("values %s", "values " + RECORD_TEMPLATE),
        (batch.batch_id, batch.source, batch.entity, batch.extract_date, str(batch.path),
         batch.content_hash, rows_in, loaded, quarantined, status, error, run_id, seconds, seconds),
    )
