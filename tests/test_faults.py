"""Every fault the generator injects is caught: its row quarantined or its file rejected.

The demo generator's manifest is the known answer: for every batch rows in = rows
loaded + rows quarantined, every row fault is in quarantine with a reason, every file
fault is a rejection naming the file, and no clean row is quarantined.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, timedelta

import pytest

from flows import load
from flows.config import load_settings
from flows.demo import generate
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration
START = date(2026, 7, 1)
DAYS = 12


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    out = tmp_path_factory.mktemp("faulty")
    g = generate(out / "landing", customers=400, days=DAYS, start=START, seed=3, faults=0.02)
    with open(g.manifest_path, newline="", encoding="utf-8") as f:
        manifest = list(csv.DictReader(f))
    return out, manifest


def _ingest_all(wh, out):
    settings = load_settings(None, landing=str(out / "landing"), home=str(out))
    load.refresh_reference(wh, settings)
    gx = GxRunner(out, wh.sqlalchemy_url())
    days = [START + timedelta(days=i) for i in range(DAYS)]
    batches = list(find_batches(settings, days))
    results = []
    for name in ENTITIES:
        results += load.ingest_entity(wh, gx, name, [b for b in batches if b.entity == name], "t")
    return results


def test_every_injected_fault_is_caught_and_nothing_else(warehouse, faulty):
    out, manifest = faulty
    results = _ingest_all(warehouse, out)
    landing = out / "landing"
    by_file = {str(r.source_file): r for r in results}
    file_faults = [m for m in manifest if not m["row"]]
    row_faults = defaultdict(set)
    for m in manifest:
        if m["row"]:
            row_faults[str(landing / m["file"])].add(int(m["row"]))
    assert file_faults and row_faults, "the generator injected no faults"
    for m in file_faults:
        r = by_file[str(landing / m["file"])]
        assert r.status == "rejected", m
        assert m["file"].split("/")[-1] in r.error
    rejected_files = {str(landing / m["file"]) for m in file_faults}
    for r in results:
        if r.status == "loaded":
            assert r.rows_in == r.rows_loaded + r.rows_quarantined, r
        elif r.status == "rejected":
            assert r.source_file in rejected_files, f"unexpected rejection: {r.error}"
    with warehouse.transaction() as cur:
        quarantined = defaultdict(set)
        for name in ENTITIES:
            cur.execute(f"select _source_file, _row_number, reasons from quarantine.{name}")
            for f, row, reasons in cur.fetchall():
                assert reasons
                quarantined[f].add(row)
    for f, rows in row_faults.items():
        if f in rejected_files:
            continue
        missed = sorted(rows - quarantined[f])
        assert not missed, (f, [m for m in manifest if m["row"] and int(m["row"]) in missed
                                and str(landing / m["file"]) == f])
    # Nothing clean was quarantined (a duplicate id quarantines the later copy only).
    for f, rows in quarantined.items():
        assert rows <= row_faults[f], (f, sorted(rows - row_faults[f]))


def test_loading_everything_twice_changes_no_raw_table(warehouse, faulty):
    out, _ = faulty
    first = _ingest_all(warehouse, out)
    with warehouse.transaction() as cur:
        counts = {}
        for name in ENTITIES:
            cur.execute(f"select count(*) from raw.{name}")
            counts[name] = cur.fetchone()[0]
    again = _ingest_all(warehouse, out)
    # Loaded batches are skipped; rejected files are tried again and rejected again.
    rejected = {r.batch_id for r in first if r.status == "rejected"}
    assert rejected
    assert {r.batch_id: r.status for r in again} == {
        r.batch_id: "rejected" if r.batch_id in rejected else "skipped" for r in first}
    with warehouse.transaction() as cur:
        for name in ENTITIES:
            cur.execute(f"select count(*) from raw.{name}")
            assert cur.fetchone()[0] == counts[name]
    # Rows reconcile from ops alone: rejected files record the rows they held.
    from flows.batches import reconcile

    balances = reconcile(warehouse)
    assert balances and all(b.balanced for b in balances), [
        (b.entity, b.extract_date, b.unaccounted, b.problems) for b in balances if not b.balanced]
    assert sum(b.rejected_rows for b in balances) > 0
    assert not any(b.uncountable for b in balances)  # CSV faults are all countable
    for r in again:
        if r.status == "rejected":
            assert r.retried and r.rows_in > 0, r
