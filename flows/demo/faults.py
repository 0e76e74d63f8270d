"""Faults on purpose: broken rows and whole files, each listed in ``_faults/manifest``.

Why this exists: validation is scored exactly only if every break is known; this module
decides which rows and files to break (per entity, seeded), breaks them the way real exports
break (bad types, out-of-range scores, null keys, duplicates, truncated or re-encoded files)
and writes the manifest.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.demo.export import _csv_bytes, _write_table
from flows.demo.params import ENTITY_ORDER, SCORE_RANGES
from flows.demo.streams import _rng
from flows.entities import ENTITIES

ROW_FAULT_KINDS = ("bad_type", "out_of_range", "null_key", "duplicate_id", "impossible_date",
                   "malformed_email", "unknown_touchpoint", "unknown_channel")
FILE_FAULT_KINDS = ("truncated", "missing_column", "renamed_column", "wrong_encoding")
_COL_TYPES = {c.name: c.pg_type for e in ENTITIES.values() for c in e.columns}
OUT_OF_RANGE_VALUE = {"nps": "11", "csat": "0", "ces": "9", "overall_satisfaction": "11",
                      "likelihood_to_renew": "6", "rating": "6"}
BAD_EMAILS = ("{}.example.com", "{}@@example.com", "{}@example", "{} @example.com")
UNKNOWN_TOUCHPOINTS = ("kiosk", "billing_v2", "chatbot")
UNKNOWN_CHANNELS = ("fax", "carrier_pigeon", "telex")
MANIFEST_FIELDS = ("file", "row", "entity", "column", "kind", "detail")


class _LazyColumns(dict[str, np.ndarray]):
    """Columns of a table as editable object arrays, converted only when first touched
    (a 1M-row day-1 file must not become 11M Python strings to break a few rows)."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__()
        self.table = table

    def __missing__(self, name: str) -> np.ndarray:
        v = self.table.column(name).to_numpy(zero_copy_only=False).astype(object)
        self[name] = v
        return v


def _renamed(col: str) -> str:
    """A plausible upstream rename (snake_case -> CamelCase), always different."""
    return "".join(p.capitalize() for p in col.split("_"))


class _Faults:
    """Plans, applies and records faults. Row faults and file faults never share a file."""

    def __init__(self, seed: int, rate: float, days: int, fmt: str) -> None:
        self.seed, self.rate, self.fmt = seed, rate, fmt
        self.manifest: list[dict[str, object]] = []
        self.pending_file: list[tuple[int, str, str]] = []  # (day, entity, kind)
        if rate <= 0:
            return
        rng = _rng(seed, "plan")
        n_files = days * len(ENTITIES)
        n_each = max(1, int(round(rate * n_files / 20)))
        kinds = [k for k in FILE_FAULT_KINDS if not (fmt == "parquet" and k == "wrong_encoding")]
        self.last_day = days - 1
        for kind in kinds:
            for _ in range(n_each):
                d = int(rng.integers(0, days // 2 + 1))  # first half: room to defer
                if kind == "wrong_encoding":  # needs Chinese text: names or comments
                    ent = ("customers", "responses")[int(rng.integers(0, 2))]
                else:
                    ent = ENTITY_ORDER[int(rng.integers(0, len(ENTITY_ORDER)))]
                self.pending_file.append((d, ent, kind))

    # --- row faults ---------------------------------------------------------------
    def _kinds_for(self, ent: str) -> list[tuple[str, str]]:
        """(kind, column) pairs that make sense for this entity."""
        e = ENTITIES[ent]
        out: list[tuple[str, str]] = []
        for c in e.columns:
            if c.pg_type in ("integer", "date", "timestamptz", "boolean") or c.pg_type.startswith(
                "numeric"
            ):
                out.append(("bad_type", c.name))
        for c in SCORE_RANGES.get(ent, {}):
            out.append(("out_of_range", c))
        for k in e.key:
            out.append(("null_key", k))
        out.append(("duplicate_id", ",".join(e.key)))
        if e.event_time:
            out.append(("impossible_date", e.event_time))
        if ent == "responses":
            out.append(("impossible_date", "responded_at<invited_at"))
        if ent == "customers":
            out += [("malformed_email", "email"), ("unknown_channel", "acquisition_channel")]
        if ent == "interactions":
            out.append(("unknown_channel", "channel"))
        if "touchpoint_code" in e.column_names:
            out.append(("unknown_touchpoint", "touchpoint_code"))
        return out

    def apply_rows(self, ent: str, day: int, extract: date, table: pa.Table,
                   rel: str) -> pa.Table:
        n = table.num_rows
        if self.rate <= 0 or n == 0:
            return table
        rng = _rng(self.seed, "faults", day * 16 + ENTITY_ORDER.index(ent))
        k = int(rng.binomial(n, self.rate))
        if k == 0:
            return table
        rows = np.sort(rng.choice(n, k, replace=False))
        faulted = np.zeros(n, dtype=bool)
        faulted[rows] = True
        cols = _LazyColumns(table)
        options = self._kinds_for(ent)
        key = ENTITIES[ent].key
        tp_col = cols["touchpoint_code"] if "touchpoint_code" in table.column_names else None
        clean_rows = np.flatnonzero(~faulted)
        for r in rows:
            for _attempt in range(20):
                kind, col = options[int(rng.integers(0, len(options)))]
                if kind == "duplicate_id":
                    earlier = clean_rows[clean_rows < r]
                    if len(earlier) == 0:
                        continue
                    src = int(earlier[int(rng.integers(0, len(earlier)))])
                    for kc in key:
                        cols[kc][r] = cols[kc][src]
                    detail = f"same key as row {src + 1}"
                elif kind == "unknown_touchpoint" and ent in ("invitations", "responses") and (
                    tp_col is None or tp_col[r] is None
                ):
                    continue  # relationship rows have no touchpoint to corrupt
                else:
                    detail = self._corrupt(kind, col, cols, r, rng, extract)
                    if detail is None:
                        continue
                    col = col.split("<")[0]
                self.manifest.append({"file": rel, "row": int(r) + 1, "entity": ent,
                                      "column": col, "kind": kind, "detail": detail})
                break
            else:  # pragma: no cover - every entity has always-applicable kinds
                raise RuntimeError(f"no applicable fault for {ent} row {r}")
        arrays = [pa.array(list(cols[c]), type=pa.string()) if c in cols else table.column(c)
                  for c in table.column_names]
        return pa.Table.from_arrays(arrays, names=table.column_names)

    @staticmethod
    def _corrupt(kind: str, col: str, cols: _LazyColumns, r: int,
                 rng: np.random.Generator, extract: date) -> str | None:
        """Break one value in place; return a human-readable detail, or None if n/a."""
        if kind == "bad_type":
            cols[col][r] = "abc"
            return "abc"
        if kind == "out_of_range":
            cols[col][r] = OUT_OF_RANGE_VALUE[col]
            return f"{col}={OUT_OF_RANGE_VALUE[col]}"
        if kind == "null_key":
            cols[col][r] = None
            return "empty key"
        if kind == "impossible_date" and col == "responded_at<invited_at":
            inv = cols["invited_at"][r]
            t = np.datetime64(inv.replace(" ", "T")) - np.timedelta64(
                int(rng.integers(3600, 48 * 3600)), "s")
            cols["responded_at"][r] = str(t).replace("T", " ")
            return "responded_at before invited_at"
        if kind == "impossible_date":
            later = extract + timedelta(days=int(rng.integers(2, 30)))
            if _COL_TYPES[col] == "date":
                cols[col][r] = later.isoformat()
            else:
                cols[col][r] = f"{later.isoformat()} {int(rng.integers(0, 24)):02d}:17:00"
            return f"after extract date {extract.isoformat()}"
        if kind == "malformed_email":
            local = (cols["email"][r] or "someone@x").split("@")[0]
            bad = BAD_EMAILS[int(rng.integers(0, len(BAD_EMAILS)))].format(local)
            cols["email"][r] = bad
            return bad
        if kind == "unknown_touchpoint":
            v = UNKNOWN_TOUCHPOINTS[int(rng.integers(0, len(UNKNOWN_TOUCHPOINTS)))]
            cols[col][r] = v
            return v
        if kind == "unknown_channel":
            v = UNKNOWN_CHANNELS[int(rng.integers(0, len(UNKNOWN_CHANNELS)))]
            cols[col][r] = v
            return v
        return None  # pragma: no cover

    # --- file faults --------------------------------------------------------------
    def take_file_fault(self, ent: str, day: int, table: pa.Table) -> str | None:
        """The file fault due for this file (planned day reached, file qualifies), if any."""
        for i, (d, e, kind) in enumerate(self.pending_file):
            # deferred to the next file of the entity that qualifies; any entity on the
            # last day, so that each kind is placed at least once whenever possible
            if (e != ent and day < self.last_day) or d > day:
                continue
            if kind == "truncated" and table.num_rows < 2:
                continue
            if kind in ("missing_column", "renamed_column") and table.num_rows < 1:
                continue
            if kind == "wrong_encoding" and not self._has_chinese(table):
                continue
            del self.pending_file[i]
            return kind
        return None

    @staticmethod
    def _has_chinese(table: pa.Table) -> bool:
        for c in table.columns:
            hit = pc.fill_null(pc.match_substring_regex(c, r"[\x{4e00}-\x{9fff}]"), False)
            if pc.any(hit).as_py():
                return True
        return False

    def apply_file(self, kind: str, ent: str, day: int, table: pa.Table, rel: str,
                   path: Path) -> None:
        """Write ``table`` to ``path`` broken in the way ``kind`` says, and record it."""
        rng = _rng(self.seed, "faults", 100_000 + day * 16 + ENTITY_ORDER.index(ent))
        names = table.column_names
        column, detail = "", ""
        if kind == "missing_column":
            # Only a column the contract requires in the file: an optional one may be absent.
            keyless = [c for c in names if c not in ENTITIES[ent].key
                       and c not in ENTITIES[ent].optional_columns]
            column = keyless[int(rng.integers(0, len(keyless)))]
            table = table.drop_columns([column])
            detail = "column absent from header and rows"
            _write_table(table, path, self.fmt)
        elif kind == "renamed_column":
            column = names[int(rng.integers(1, len(names)))]
            new = [(_renamed(c) if c == column else c) for c in names]
            table = table.rename_columns(new)
            detail = f"header says {_renamed(column)!r}"
            _write_table(table, path, self.fmt)
        elif kind == "wrong_encoding":
            data = _csv_bytes(table).decode("utf-8").encode("gb18030")
            path.write_bytes(data)
            detail = "gb18030 bytes, utf-8 expected"
        elif kind == "truncated":
            _write_table(table, path, self.fmt)
            data = path.read_bytes()
            if self.fmt == "csv":
                nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
                n = len(nl) - 1  # data rows; line r (1-based) spans nl[r-1]+1 .. nl[r]
                r = int(rng.integers((n + 1) // 2, n + 1)) if n > 1 else 1
                s_, e_ = int(nl[r - 1]) + 1, int(nl[r])
                cut = s_ + int(rng.integers(1, max(2, e_ - s_)))  # keeps >=1 char, no newline
                detail = f"cut at byte {cut}, inside data row {r}; later rows lost"
            else:
                cut = len(data) // 2
                detail = f"cut at byte {cut} of {len(data)}"
            path.write_bytes(data[:cut])
        self.manifest.append({"file": rel, "row": "", "entity": ent, "column": column,
                              "kind": kind, "detail": detail})

    def write_manifest(self, out: Path) -> Path:
        d = out / "_faults"
        d.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.manifest)
        (d / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        unplaced = [{"planned_day": p[0], "entity": p[1], "kind": p[2]} for p in self.pending_file]
        doc = {"rate": self.rate, "row_fault_kinds": list(ROW_FAULT_KINDS),
               "file_fault_kinds": list(FILE_FAULT_KINDS), "faults": self.manifest,
               "unplaced_file_faults": unplaced}
        (d / "manifest.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        return d / "manifest.csv"
