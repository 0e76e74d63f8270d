"""Load: COPY a month's new batches into one typed table, validate, attach it to ``raw``.

``raw.<entity>`` is list-partitioned by ``_batch_id``; a partition is the table files
were COPYed into, so loading writes the rows once, like a bare COPY. Per entity and
run: (1) each month's new batches are COPYed, one after the other, into one typed group
table under a stage parent (their lineage rides on column defaults set before each COPY,
so it is stored in each row), each file in its own savepoint so a broken one is rejected
alone; a file with values that do not parse (a word in an integer column) goes to a text
stage instead, where the suite's parse rules pick out those rows and the rest are cast
into a table of its own; (2) the entity's GX suite runs once over the stage; (3) each
month's batches then commit in one transaction: failing rows move to
``quarantine.<entity>`` with every rule they broke, the tables move from the stage to
``raw`` (one partition for the month's typed batches, listing all their ids) and every
batch gets its ``ops.load_batches`` row. Per-batch catalogue work (a table, two
ATTACHes, a commit each) was what made a backfill of small daily files slow (profiled in
``benchmarks/ingest_profile.py``); a nightly run's single batch still gets a table of its
own. A crash leaves every batch either wholly loaded and recorded or not at all (the
next run drops the stage with whatever it held), and a re-run skips what is recorded.
Loads of one entity take its lock (``flows.warehouse.entity_lock``): entities load side
by side, two loads of the same one wait for each other.

The steps, one module each: ``tables`` (names and DDL of the stage and batch tables),
``records`` (the result types and ``ops.load_batches``), ``copying`` (a file's COPY and
the rejection its errors become), ``stage`` (a file onto the stage, typed or as text),
``validation`` (the suite over the stage, failures collected), ``quarantine``,
``commit`` (one batch into ``raw``), ``ingest`` (``ingest_entity``, which runs them)
and ``refresh`` (reference codes and domain into ``ops``). This module re-exports the
names other modules, tests and benchmarks use as ``flows.load.<name>``.
"""

from __future__ import annotations

# Looked up here at call time by flows/load/commit.py, so that replacing
# ``flows.load.supersede`` (benchmarks/corrections_bench.py) takes effect.
from flows.corrections import supersede
from flows.load.commit import Group, _commit_group, _detach
from flows.load.copying import (
    _copy,
    _copy_error_message,
    _copy_format,
    _copy_source,
    _pg_encoding,
    _read_error_message,
    file_error,
)
from flows.load.ingest import _reinstate, ingest_entity
from flows.load.quarantine import _quarantine, failing_batches, quarantine_many
from flows.load.records import (
    BatchResult,
    Staged,
    _record,
    batch_statuses,
    known_batches,
    rejected_files,
)
from flows.load.refresh import refresh_reference
from flows.load.stage import NUL_RULE, _flag_nul_rows, _stage_file, stage_batch
from flows.load.tables import (
    BATCH_SCHEMA,
    STAGE_LINEAGE,
    _attach,
    _batch_ref,
    _create_batch_table,
    _create_stage,
    _drop_stage,
    _seq,
    _stage_ref,
    batch_table,
    group_table,
    source_zone,
    stage_table,
    text_stage_table,
)
from flows.load.validation import (
    _cast_parsed_rows,
    _collect_failures,
    _create_failures,
    _reason,
    _validate_stage,
    validate_staged,
)

__all__ = [
    "BATCH_SCHEMA", "NUL_RULE", "STAGE_LINEAGE", "BatchResult", "Group", "Staged", "_attach",
    "_batch_ref", "_cast_parsed_rows", "_collect_failures", "_commit_group", "_copy",
    "_copy_error_message", "_copy_format", "_copy_source", "_create_batch_table",
    "_create_failures", "_create_stage", "_detach", "_flag_nul_rows", "_pg_encoding",
    "_quarantine", "_read_error_message", "_reason", "_record", "_reinstate", "_seq",
    "_drop_stage", "_stage_file", "_stage_ref", "_validate_stage", "batch_statuses", "batch_table",
    "failing_batches", "file_error", "group_table", "ingest_entity", "known_batches",
    "quarantine_many", "refresh_reference",
    "rejected_files", "source_zone", "stage_batch", "stage_table", "supersede",
    "text_stage_table", "validate_staged",
]
