"""Batches: the generator's in-memory rows, a dict of equal-length numpy arrays.

Why this exists: the daily loop queues, concatenates, reorders and de-duplicates rows many
times before they become a table; these few helpers keep that plain and shared.
"""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]


def _concat(batches: list[Batch]) -> Batch | None:
    if not batches:
        return None
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _take_rows(b: Batch, idx: np.ndarray) -> Batch:
    return {k: v[idx] for k, v in b.items()}



def _dedupe(b: Batch | None) -> Batch | None:
    """One row per customer per extract: the latest change wins (state is end-of-day)."""
    if b is None or len(b["cust"]) == 0:
        return b
    order = np.lexsort((b["ts"], b["cust"]))
    s = _take_rows(b, order)
    last = np.ones(len(s["cust"]), dtype=bool)
    last[:-1] = s["cust"][1:] != s["cust"][:-1]
    return _take_rows(s, np.flatnonzero(last))
