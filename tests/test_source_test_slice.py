"""dbt's tests on raw tables check the batches no build has read yet, not all of raw.

A nightly run on a year of history spent a minute re-scanning raw for not-null keys
(16 s per big table at 1M customers). The slice is the batches some incremental staging
model has not built from (macros/test_slice.sql); the weekly full check tests every row.
"""

from __future__ import annotations

from datetime import date

from raw_batches import interactions_batch

from flows import transform
from flows.config import load_settings

DAY = date(2026, 3, 2)
TEST = "source:crm.interactions"


def _seen_by_staging(cur, batch_id: str, rows: int) -> None:
    """As if stg_crm__interactions had been built from the batch (its bookkeeping)."""
    cur.execute("insert into ops.dbt_incremental_builds (model, run_date, built_at, full_build) "
                "values ('stg_crm__interactions', %s, now(), false) on conflict do nothing", (DAY,))
    cur.execute("insert into ops.dbt_incremental_batches (model, batch_id, rows_loaded) "
                "values ('stg_crm__interactions', %s, %s)", (batch_id, rows))


def _null_key_test_fails(warehouse, settings, **extra) -> bool:
    out = transform.run_dbt(warehouse, settings, ["test", "--select", TEST], DAY,
                            extra_vars=extra or None)
    return any("source_not_null_crm_interactions_interaction_id" in f for f in out.failures)


def test_raw_tests_check_the_batches_not_yet_built_and_the_full_check_all(warehouse, tmp_path):
    settings = load_settings(home=str(tmp_path))
    # the bookkeeping tables come with dbt's on-run-start: a first test run creates them,
    # and with no staging watermark it tests every row
    assert not _null_key_test_fails(warehouse, settings)
    with warehouse.transaction() as cur:
        interactions_batch(cur, "old", DAY, ["I1", None])  # a null key an earlier build already read
        _seen_by_staging(cur, "old", 2)
        interactions_batch(cur, "new", DAY, ["I2", "I3"])
    assert not _null_key_test_fails(warehouse, settings)  # the old batch is not re-tested
    assert _null_key_test_fails(warehouse, settings, full_tests=True)  # the weekly check is
    with warehouse.transaction() as cur:
        interactions_batch(cur, "newer", DAY, [None])  # a null key in a batch no build has read: found
    assert _null_key_test_fails(warehouse, settings)
