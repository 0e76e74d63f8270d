"""Planted row faults for the utility profile, listed in ``_faults/manifest.csv``.

Why only these kinds: each is a row the pipeline must quarantine *whatever* the column
mapping does with the rest of the file - a value outside the configured domain
(``domain.categories``), a score outside its configured scale (``domain.scales``), an
empty key. A fault that the mapping itself would have to reject (a label missing from a
value map) is a configuration error, not a row fault, and is left out. Rows are broken
only where losing them loses nothing else: account rows only when they re-export an
account loaded on an earlier day, never the subscription rows that carry a churn.
The manifest has the default demo's columns (``flows.demo.MANIFEST_FIELDS``), with the
contract column named in ``column`` and the source header in ``detail``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from flows.demo import MANIFEST_FIELDS
from flows.demo_profiles.utility_params import HEADERS

# entity -> (kind, contract column, bad value)
FAULTS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "customers": (("unknown_category", "region", "atlantis"),),
    "interactions": (("unknown_category", "channel", "carrier_pigeon"),),
    "orders": (("null_key", "order_id", None),),
    "responses": (("out_of_range", "nps", "11"),),
    "item_ratings": (("out_of_range", "rating", "11"),),
}
ENTITY_NO = {e: i for i, e in enumerate(HEADERS)}


class RowFaults:
    """Breaks a share ``rate`` of the eligible rows of each file and records each one."""

    def __init__(self, seed: int, rate: float) -> None:
        self.seed, self.rate = seed, rate
        self.manifest: list[dict[str, object]] = []

    def apply(self, ent: str, day: int, table: pa.Table, rel: str,
              eligible: np.ndarray) -> pa.Table:
        if self.rate <= 0 or ent not in FAULTS or table.num_rows == 0:
            return table
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, 99, day,
                                                            ENTITY_NO[ent]]))
        candidates = np.flatnonzero(eligible)
        k = int(rng.binomial(len(candidates), self.rate))
        if k == 0:
            return table
        rows = np.sort(rng.choice(candidates, k, replace=False))
        names = table.column_names
        edits: dict[str, np.ndarray] = {}
        for r in rows:
            kind, col, bad = FAULTS[ent][int(rng.integers(0, len(FAULTS[ent])))]
            header = HEADERS[ent][col]
            if header not in edits:
                edits[header] = table.column(header).to_numpy(zero_copy_only=False).astype(
                    object)
            edits[header][r] = bad
            self.manifest.append({"file": rel, "row": int(r) + 1, "entity": ent,
                                  "column": col, "kind": kind,
                                  "detail": f"{header}={'' if bad is None else bad}"})
        arrays = [pa.array(list(edits[c]), pa.string()) if c in edits else table.column(c)
                  for c in names]
        return pa.Table.from_arrays(arrays, names=names)

    def write_manifest(self, out: Path) -> Path | None:
        """``_faults/manifest.csv`` (+ ``.json``); removes a stale one when clean."""
        d = out / "_faults"
        if self.rate <= 0:
            for name in ("manifest.csv", "manifest.json"):
                (d / name).unlink(missing_ok=True)
            return None
        d.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.manifest)
        (d / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        doc = {"rate": self.rate, "row_fault_kinds": sorted({k for f in FAULTS.values()
                                                             for k, _, _ in f}),
               "file_fault_kinds": [], "faults": self.manifest}
        (d / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return d / "manifest.csv"
