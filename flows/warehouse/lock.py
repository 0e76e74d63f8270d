"""Advisory locks: two runs never write at the same time; two loads of one entity neither.

PostgreSQL advisory locks (not files) so that runs started on different machines
against one warehouse are serialised too. ``run_lock`` covers a whole run (the holder
is named from ``ops.pipeline_runs`` when waiting gives up). ``entity_lock`` is the
load's own scope: the stage tables of a load are the entity's (``raw._stage_<entity>``),
so entities load side by side (Dask workers within a run) while two loads or replays of
the same entity, from whatever process, wait for each other.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from flows.errors import LockTimeoutError

if TYPE_CHECKING:
    from flows.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

# One advisory-lock key for "a pipeline run is writing": two runs never interleave.
RUN_LOCK_KEY = 0x0C0100
# The class of the two-key locks of one entity's load: (ENTITY_LOCK_CLASS, hashtext(name)).
ENTITY_LOCK_CLASS = 0x0C02


@contextlib.contextmanager
def _advisory(wh: Warehouse, timeout_seconds: float, query: str, params: tuple,
              timed_out: Callable[..., str]) -> Iterator[None]:
    """Hold the advisory lock ``query`` tries; wait up to ``timeout_seconds``, then raise
    LockTimeoutError with ``timed_out(cursor)`` as its message."""
    conn = wh.connect(autocommit=True)
    try:
        deadline = time.monotonic() + timeout_seconds
        with conn.cursor() as cur:
            while True:
                cur.execute(query, params)
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(timed_out(cur))
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        yield
    finally:
        conn.close()  # closing the session releases the advisory lock


@contextlib.contextmanager
def run_lock(wh: Warehouse, timeout_seconds: float, run_id: str) -> Iterator[None]:
    """Hold the warehouse-wide run lock; wait up to ``timeout_seconds``, then name the holder."""

    def holder(cur) -> str:
        cur.execute("select run_id, flow, started_at from ops.pipeline_runs "
                    "where status = 'running' order by started_at desc limit 1")
        row = cur.fetchone()
        who = (f"run {row[0]} ({row[1]}, started {row[2]:%Y-%m-%d %H:%M:%S})" if row
               else "another process")
        return (f"the warehouse is locked by {who}; waited {timeout_seconds:.0f} s. "
                "Try again when it finishes, or raise CXLOOP_LOCK_TIMEOUT.")

    with _advisory(wh, timeout_seconds, "select pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,),
                   holder):
        log.info("run %s holds the warehouse lock", run_id)
        yield


@contextlib.contextmanager
def entity_lock(wh: Warehouse, entity: str, timeout_seconds: float) -> Iterator[None]:
    """Hold the lock of loading ``entity`` (its stage tables); wait up to
    ``timeout_seconds``."""

    def busy(_cur) -> str:
        return (f"another load or replay of {entity} holds its stage (raw._stage_{entity}); "
                f"waited {timeout_seconds:.0f} s. Try again when it finishes.")

    with _advisory(wh, timeout_seconds, "select pg_try_advisory_lock(%s, hashtext(%s))",
                   (ENTITY_LOCK_CLASS, entity), busy):
        yield
