"""What a correction costs: a same-name re-delivery of one N-row interactions day.

Loads the day, then a correction with 1 % of the rows removed, 1 % changed and 1 %
added, and prints (JSON) the two load times, the part of the second spent replacing
(diff by key + detach, flows/corrections.py), and a staging-style read (``distinct on``
the key, latest first) over raw with the replaced batch detached against the same read
over both batches filtered on ``ops.load_batches.status`` (the alternative design).

    python benchmarks/corrections_bench.py --rows 200000
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows import corrections, load  # noqa: E402
from flows.config import REPO_ROOT, load_settings  # noqa: E402
from flows.entities import ENTITIES  # noqa: E402
from flows.extract import find_batches  # noqa: E402
from flows.validate import GxRunner  # noqa: E402
from flows.warehouse import Warehouse, open_warehouse, stop_embedded  # noqa: E402

D = date(2026, 8, 3)
COLS = "interaction_id, wait_seconds, _batch_id, _extract_date, _loaded_at, _row_number"
LATEST = "order by interaction_id, _extract_date desc, _loaded_at desc, _row_number desc"


def _write(landing: Path, rows: list[list[object]]) -> None:
    path = landing / "crm" / "interactions" / D.isoformat() / "interactions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ENTITIES["interactions"].column_names)
        w.writerows(rows)


def _best(wh: Warehouse, query: str, tries: int = 5) -> float:
    best = float("inf")
    for _ in range(tries):
        with wh.transaction() as cur:
            t0 = time.monotonic()
            cur.execute(query)
            cur.fetchall()
            best = min(best, time.monotonic() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    n = ap.parse_args().rows
    with open(REPO_ROOT / "dbt_project/seeds/touchpoint_catalogue.csv", encoding="utf-8") as f:
        tp = next(csv.DictReader(f))

    def row(i: int, wait: int) -> list[object]:
        return [f"i{i}", f"c{i % 5000}", tp["touchpoint_code"], tp["default_channel"],
                f"{D} 10:00:00", wait, 30, "true", "true"]

    home = Path(tempfile.mkdtemp(prefix="cxb-", dir="/tmp"))
    landing = home / "landing"
    try:
        wh = open_warehouse(home)
        s = load_settings(None, landing=str(landing), home=str(home))
        load.refresh_reference(wh, s)
        gx = GxRunner(home, wh.sqlalchemy_url())

        def ingest() -> tuple[float, load.BatchResult]:
            t0 = time.monotonic()
            [r] = load.ingest_entity(wh, gx, "interactions", list(find_batches(s, [D])), "bench")
            return time.monotonic() - t0, r

        _write(landing, [row(i, 10) for i in range(n)])
        first, _ = ingest()
        _write(landing, [row(i, 20 if i % 100 == 1 else 10) for i in range(n) if i % 100]
               + [row(n + i, 5) for i in range(n // 100)])
        took: dict[str, float] = {}
        original = corrections.supersede

        def timed(*args, **kw):  # type: ignore[no-untyped-def]
            t0 = time.monotonic()
            out = original(*args, **kw)
            took["replace"] = time.monotonic() - t0
            return out

        load.supersede = timed
        second, r = ingest()
        assert r.change is not None
        old = f'raw_superseded."interactions__{r.change.replaces[0]}"'
        detached = _best(wh, f"select count(*) from (select distinct on (interaction_id) * "
                             f"from (select {COLS} from raw.interactions) r {LATEST}) s")
        filtered = _best(wh, f"select count(*) from (select distinct on (interaction_id) * "
                             f"from (select {COLS} from raw.interactions union all select {COLS} "
                             f"from {old}) r where r._batch_id in (select batch_id from "
                             f"ops.load_batches where status = 'loaded') {LATEST}) s")
        print(json.dumps({
            "rows": n, "first_load_s": round(first, 2), "correction_load_s": round(second, 2),
            "replace_s": round(took["replace"], 2),
            "change": {"added": r.change.rows_added, "removed": r.change.rows_removed,
                       "changed": r.change.rows_changed},
            "staging_read_detached_s": round(detached, 3),
            "staging_read_status_filter_s": round(filtered, 3)}))
    finally:
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
