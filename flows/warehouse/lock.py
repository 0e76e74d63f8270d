"""The warehouse-wide run lock: two pipeline runs never write at the same time.

A PostgreSQL advisory lock (not a file) so that runs started on different
machines against one warehouse are serialised too; the holder is named from
``ops.pipeline_runs`` when waiting gives up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flows.errors import LockTimeoutError

if TYPE_CHECKING:
    from flows.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

# One advisory-lock key for "a pipeline run is writing": two runs never interleave.
RUN_LOCK_KEY = 0x0C0100


@contextlib.contextmanager
def run_lock(wh: Warehouse, timeout_seconds: float, run_id: str) -> Iterator[None]:
    """Hold the warehouse-wide run lock; wait up to ``timeout_seconds``, then name the holder."""
    conn = wh.connect(autocommit=True)
    try:
        deadline = time.monotonic() + timeout_seconds
        with conn.cursor() as cur:
            while True:
                cur.execute("select pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    cur.execute(
                        "select run_id, flow, started_at from ops.pipeline_runs "
                        "where status = 'running' order by started_at desc limit 1"
                    )
                    holder = cur.fetchone()
                    who = (
                        f"run {holder[0]} ({holder[1]}, started {holder[2]:%Y-%m-%d %H:%M:%S})"
                        if holder
                        else "another process"
                    )
                    raise LockTimeoutError(
                        f"the warehouse is locked by {who}; waited {timeout_seconds:.0f} s. "
                        "Try again when it finishes, or raise CXLOOP_LOCK_TIMEOUT."
                    )
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        log.info("run %s holds the warehouse lock", run_id)
        yield
    finally:
        conn.close()  # closing the session releases the advisory lock
