"""A loaded interactions batch written straight into raw, for tests of dbt's bookkeeping.

Tests of the staging watermark and the raw tests' slice need batches in raw without a
whole load: a partition of ``raw.interactions`` and its ``ops.load_batches`` row.
"""

from __future__ import annotations

from datetime import date


def interactions_batch(cur, batch_id: str, day: date, ids: list[str | None]) -> None:
    """Batch ``batch_id`` of ``day`` (its own partition), one interaction per id, of
    customer C1 at 09:00 UTC that day."""
    cur.execute(
        "insert into ops.load_batches (batch_id, source, entity, extract_date, source_file, "
        "content_hash, rows_in, rows_loaded, rows_quarantined, status, started_at) "
        "values (%s, 'crm', 'interactions', %s, %s, %s, %s, %s, 0, 'loaded', now())",
        (batch_id, day, f"{batch_id}.csv", batch_id, len(ids), len(ids)))
    part = f"raw_batches.interactions_{batch_id}"
    cur.execute(f"create table {part} partition of raw.interactions for values in ('{batch_id}')")
    for i, interaction_id in enumerate(ids, start=1):
        cur.execute(
            f"insert into {part} (interaction_id, customer_id, occurred_at, _batch_id, "
            "_source_file, _row_number, _extract_date) values (%s, 'C1', %s, %s, %s, %s, %s)",
            (interaction_id, f"{day} 09:00:00+00", batch_id, f"{batch_id}.csv", i, day))
