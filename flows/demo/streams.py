"""Seeded random streams, one per purpose and day.

Why this exists: output must be byte-identical for a seed, and one change (a new draw in
one purpose) must not shift every other stream; so each purpose and day gets its own
``numpy`` Generator seeded from ``(seed, purpose, day)``. Appending a purpose keeps the old ones.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {
    name: i
    for i, name in enumerate(
        ["base", "signup", "churn", "names", "survey_traits", "usage", "onboard", "attrs",
         "survey", "ratings", "comments", "orders", "updates", "warts", "faults", "plan"]
    )
}


def _rng(seed: int, purpose: str, day: int = -1) -> np.random.Generator:
    """A Generator for one purpose (and day): independent streams, stable under change."""
    return np.random.default_rng(np.random.SeedSequence([seed, PURPOSES[purpose], day + 1]))
