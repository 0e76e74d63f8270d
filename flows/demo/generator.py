"""The generator's run state and daily loop: scheduling rows to export days and writing them.

Why this exists: one run holds the population, the pending rows of the coming days (late
arrivals, invitations sent tomorrow, answers within days) and the counters; ``run`` streams
the window day by day. The day's events come from the mixins of :mod:`.subscriptions`,
:mod:`.interactions` and :mod:`.surveys`; :mod:`.tables` formats them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.demo.batches import Batch, _concat, _take_rows
from flows.demo.catalogue import load_catalogue
from flows.demo.export import CSV_CHUNK_ROWS, _csv_header, _csv_rows, _write_table
from flows.demo.faults import _Faults
from flows.demo.interactions import _InteractionsMixin
from flows.demo.params import DAY, ENTITY_ORDER, EPOCH, P_LATE, P_REEXPORT, TP_CHANNEL_P, TP_PARAMS
from flows.demo.population import _Population
from flows.demo.streams import _rng
from flows.demo.subscriptions import _CrmMixin
from flows.demo.summary import GenerationSummary
from flows.demo.surveys import _SurveysMixin
from flows.demo.tables import _TablesMixin
from flows.entities import ENTITIES


class _Generator(_CrmMixin, _InteractionsMixin, _SurveysMixin, _TablesMixin):
    """Holds the state of one run; ``run`` streams the window day by day."""

    def __init__(self, out: Path, customers: int, days: int, start: date, seed: int,
                 fmt: str, faults: float) -> None:
        self.out, self.days, self.start, self.seed, self.fmt = out, days, start, seed, fmt
        self.cat = load_catalogue()
        self.tp = {c: i for i, c in enumerate(self.cat.codes)}
        self.t0 = (start - EPOCH).days * DAY  # epoch seconds of window start
        self.pop = _Population(seed, customers, days)
        self.faults = _Faults(seed, faults, days, fmt)
        # rows waiting for the extract of their day; "_events" = scheduled onboarding steps
        self.pending: dict[str, dict[int, list[Batch]]] = {e: {} for e in ENTITIES}
        self.pending["_events"] = {}
        self.next_id = {"interactions": 1, "invitations": 1, "responses": 1, "orders": 1}
        self.summary = GenerationSummary(out=out, start=start,
                                         end=start + timedelta(days=days - 1), days=days,
                                         fmt=fmt, customers_base=customers,
                                         customers_total=self.pop.n,
                                         rows={e: 0 for e in ENTITIES})
        self.params = [TP_PARAMS[c] for c in self.cat.codes]
        self.tp_mean = np.array([p["mean"] for p in self.params])
        self.w_os = np.array([p["w_os"] for p in self.params])
        self.w_ltr = np.array([p["w_ltr"] for p in self.params])
        chan = np.array([TP_CHANNEL_P[c] for c in self.cat.codes], dtype=float)
        self.chan_cum = np.cumsum(chan / chan.sum(1, keepdims=True), axis=1)
        self.unres_base = np.array([p["unres"] for p in self.params])
        self.fcr_p = np.array([p["fcr"] for p in self.params])
        self.wait_med = np.array([p["wait"] for p in self.params], dtype=float)
        self.wait_s = np.array([p["wait_s"] for p in self.params])
        self.handle_med = np.array([p["handle"] for p in self.params], dtype=float)
        self.handle_s = np.array([p["handle_s"] for p in self.params])
        # churn order: who cancels on which day
        c = self.pop.churn_abs
        in_window = np.flatnonzero((c >= 0) & (c < days))
        self.churn_sorted = in_window[np.argsort(c[in_window], kind="stable")]
        self.churn_day_bounds = np.searchsorted(c[self.churn_sorted], np.arange(days + 1))
        self.signup_bounds = np.concatenate(
            [[customers], customers + np.cumsum(self.pop.signups_per_day)]
        )


    # --- helpers ------------------------------------------------------------------
    def secs(self, t_abs: np.ndarray) -> np.ndarray:
        """Window-relative days (float) -> epoch seconds (int)."""
        return self.t0 + np.floor(np.asarray(t_abs) * DAY).astype(np.int64)

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        return (np.asarray(ts) - self.t0) // DAY

    def schedule(self, entity: str, export_day: np.ndarray, batch: Batch) -> None:
        """Queue rows for the extract of their export day (dropped past the window)."""
        if len(export_day) == 0:
            return
        ok = export_day < self.days
        export_day, batch = export_day[ok], _take_rows(batch, np.flatnonzero(ok))
        for d in np.unique(export_day):
            self.pending[entity].setdefault(int(d), []).append(
                _take_rows(batch, np.flatnonzero(export_day == d))
            )

    def schedule_with_warts(self, entity: str, ts: np.ndarray, batch: Batch,
                            rng: np.random.Generator, late: bool) -> None:
        """Export on the event's day; some late (1-2 days), some re-exported unchanged."""
        export = self.day_of(ts)
        u = rng.random(len(export))
        if late:
            is_late = u < P_LATE
            export = export + is_late * rng.integers(1, 3, len(export))
        else:
            is_late = np.zeros(len(export), dtype=bool)
        self.schedule(entity, export, batch)
        again = np.flatnonzero(~is_late & (u > 1 - P_REEXPORT))
        if len(again):
            self.schedule(entity, export[again] + rng.integers(1, 4, len(again)),
                          _take_rows(batch, again))


    # --- run --------------------------------------------------------------------------
    def write_day(self, day: int, ent: str, b: Batch | None) -> None:
        extract = self.start + timedelta(days=day)
        src = ENTITIES[ent].source
        d = self.out / src / ent / extract.isoformat()
        d.mkdir(parents=True, exist_ok=True)
        suffix = "csv" if self.fmt == "csv" else "parquet"
        path = d / f"{ent}_{extract.strftime('%Y%m%d')}.{suffix}"
        rel = path.relative_to(self.out).as_posix()
        n = 0 if b is None else len(next(iter(b.values())))
        if b is not None and n > CSV_CHUNK_ROWS and self.faults.rate <= 0:
            # Big clean file (day 1 = the whole base): format and write it in slices so
            # memory stays at one slice of strings, not the whole file.
            self._write_in_slices(ent, b, n, path)
            self.summary.rows[ent] += n
            self.summary.files.append(rel)
            return
        if b is None or n == 0:
            table = pa.Table.from_arrays(
                [pa.array([], type=pa.string()) for _ in ENTITIES[ent].column_names],
                names=ENTITIES[ent].column_names)
        else:
            table = self.table(ent, b)
        self.summary.rows[ent] += table.num_rows
        self.summary.files.append(rel)
        kind = self.faults.take_file_fault(ent, day, table) if self.faults.rate > 0 else None
        if kind is not None:
            self.faults.apply_file(kind, ent, day, table, rel, path)
            return
        table = self.faults.apply_rows(ent, day, extract, table, rel)
        _write_table(table, path, self.fmt)

    def _write_in_slices(self, ent: str, b: Batch, n: int, path: Path) -> None:
        slices = (_take_rows(b, np.arange(lo, min(n, lo + CSV_CHUNK_ROWS)))
                  for lo in range(0, n, CSV_CHUNK_ROWS))
        if self.fmt == "csv":
            with open(path, "wb") as f:
                f.write(_csv_header(ENTITIES[ent].column_names))
                for part in slices:
                    f.write(_csv_rows(self.table(ent, part)))
        else:
            schema = pa.schema([(c, pa.string()) for c in ENTITIES[ent].column_names])
            with pq.ParquetWriter(path, schema, compression="snappy") as w:
                for part in slices:
                    w.write_table(self.table(ent, part))

    def run(self, progress: Callable[[int, int], None] | None) -> GenerationSummary:
        sort_keys = {"customers": ("ts", "cust"), "subscriptions": ("ts", "cust"),
                     "orders": ("day", "oid"), "interactions": ("ts", "iid"),
                     "invitations": ("ts", "vid"), "responses": ("ts_resp", "rid"),
                     "item_ratings": ("ts_resp", "rid", "tp")}
        for day in range(self.days):
            customers, subs = self.crm_changes_for(day)
            self.orders_for(day)
            inter = self.interactions_for(day)
            if inter is not None:
                self.schedule_with_warts("interactions", inter["ts"],
                                         {k: v for k, v in inter.items() if k != "t"},
                                         _rng(self.seed, "warts", 100_000 + day), late=True)
            self.surveys_for(day, inter)
            for ent in ENTITY_ORDER:
                if ent == "customers":
                    b = customers
                elif ent == "subscriptions":
                    b = subs
                else:
                    b = _concat(self.pending[ent].pop(day, []))
                if b is not None and ent in sort_keys:
                    keys = [b[k] for k in reversed(sort_keys[ent])]
                    b = _take_rows(b, np.lexsort(keys))
                self.write_day(day, ent, b)
            if progress is not None:
                progress(day + 1, self.days)
        return self.summary
