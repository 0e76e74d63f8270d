"""A run's new batches of one month share one table: every guarantee still holds per batch.

One ingest of several days (a backfill) COPYs each month's files of an entity into one
table, which becomes one partition of ``raw`` for all their batch ids, with each row's
batch lineage in its columns. This follows such a month through what the load promises
per batch: a broken file is rejected alone (and loads later under the same id once the
configuration is fixed), a file with a value that does not parse is staged as text and
gets its own partition, bad rows are quarantined per batch, a re-delivered day inside the
month replaces only that day's rows and can be taken back, quarantine replay reaches a
row of the shared table, a re-run skips everything, and reconciliation balances.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flows import batches, load, replay
from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import dates_between, find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration

E = "interactions"
HEADER = ",".join(ENTITIES[E].column_names)
DAYS = dates_between(date(2026, 1, 27), date(2026, 2, 1))


def _row(rid: str, day: date, touchpoint: str = "billing", wait: str = "30") -> str:
    return f"{rid},c{rid},{touchpoint},web,{day} 10:00:00,{wait},200,true,true"


def _write(landing: Path, day: date, rows: list[str], encoding: str = "utf-8") -> Path:
    folder = landing / "crm" / E / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{E}_{day:%Y%m%d}.csv"
    path.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode(encoding))
    return path


def _q(wh, query: str, params: tuple = ()) -> list[tuple]:
    with wh.transaction() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _partitions(wh) -> dict[str, str]:
    return dict(_q(wh, "select c.relname, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i "
                   "join pg_class c on c.oid = i.inhrelid "
                   "where i.inhparent = 'raw.interactions'::regclass"))


def test_a_month_of_batches_in_one_table_keeps_every_batch_guarantee(warehouse, tmp_path):
    landing, cfg = tmp_path / "landing", tmp_path / "cxloop.yml"

    def ingest(config: str = "sources:\n  crm: {}\n") -> dict[date, load.BatchResult]:
        cfg.write_text(config)
        s = load_settings(cfg, landing=str(landing), home=str(tmp_path))
        load.refresh_reference(warehouse, s)
        found = [b for b in find_batches(s, DAYS) if b.entity == E]
        out = load.ingest_entity(warehouse, GxRunner(tmp_path, warehouse.sqlalchemy_url()), E,
                                 found, "t")
        return {r.extract_date: r for r in out if r.status != "skipped"}

    d27, d28, d29, d30, d31, f1 = DAYS
    _write(landing, d27, [_row("a1", d27), _row("a2", d27, "no_such_touchpoint"),
                          _row("a3", d27)])
    _write(landing, d28, [_row("b1", d28), _row("b2", d28, wait="abc")])  # does not parse
    _write(landing, d29, [_row("c评1", d29)], encoding="gb18030")  # read as utf-8: broken
    jan30 = [_row("d1", d30), _row("d2", d30)]
    _write(landing, d30, jan30)
    _write(landing, d31, [_row("e1", d31)])
    _write(landing, f1, [_row("f1", f1)])
    got = ingest()
    assert {d: (r.status, r.rows_loaded, r.rows_quarantined) for d, r in got.items()} == {
        d27: ("loaded", 2, 1), d28: ("loaded", 1, 1), d29: ("rejected", 0, 0),
        d30: ("loaded", 2, 0), d31: ("loaded", 1, 0), f1: ("loaded", 1, 0)}
    ids = {d: r.batch_id for d, r in got.items()}
    # January's typed files share one partition (the rejected and the text-staged file
    # are not in it); the text-staged file and February's single file have their own.
    parts = _partitions(warehouse)
    [month] = [n for n in parts if n.startswith(f"{E}__202601_")]
    assert sorted(parts) == sorted([month, f"{E}__{ids[d28]}", f"{E}__{ids[f1]}"])
    assert all(ids[d] in parts[month] for d in (d27, d30, d31))
    assert ids[d28] not in parts[month] and ids[d29] not in parts[month]
    # Lineage per row, row numbers per file as delivered.
    assert _q(warehouse, "select interaction_id, _batch_id, _row_number, _extract_date, "
              "_source_file from raw.interactions where _extract_date in (%s, %s) "
              "order by 1", (d27, d30)) == [
        ("a1", ids[d27], 1, d27, got[d27].source_file),
        ("a3", ids[d27], 3, d27, got[d27].source_file),
        ("d1", ids[d30], 1, d30, got[d30].source_file),
        ("d2", ids[d30], 2, d30, got[d30].source_file)]
    assert _q(warehouse, "select _batch_id, _row_number from quarantine.interactions "
              "order by _extract_date") == [(ids[d27], 2), (ids[d28], 2)]
    assert all(b.balanced for b in batches.reconcile(warehouse, E))

    # The rejected file loads under the same batch id once its encoding is configured.
    fixed = ingest("sources:\n  crm:\n    encoding: gb18030\n")
    assert list(fixed) == [d29] and fixed[d29].batch_id == ids[d29]
    assert fixed[d29].status == "loaded" and fixed[d29].retried
    assert _q(warehouse, "select interaction_id from raw.interactions where _batch_id = %s",
              (ids[d29],)) == [("c评1",)]

    # A re-delivered day of the month replaces that day's rows only.
    _write(landing, d30, [_row("d1", d30, wait="31")])
    [corr] = ingest().values()
    assert corr.change is not None and corr.change.replaces == [ids[d30]]
    assert (corr.change.rows_removed, corr.change.rows_changed) == (1, 1)
    assert _q(warehouse, "select interaction_id, wait_seconds from raw.interactions "
              "where _extract_date = %s", (d30,)) == [("d1", 31)]
    assert _q(warehouse, f'select count(*) from raw_superseded."{E}__{ids[d30]}"') == [(2,)]
    assert _q(warehouse, "select count(*) from raw.interactions where _batch_id = %s",
              (ids[d27],)) == [(2,)]
    # ... and the correction taken back makes the first delivery current again.
    _write(landing, d30, jan30)
    [back] = ingest().values()
    assert back.batch_id == ids[d30] and back.change is not None and back.change.reinstated
    assert _q(warehouse, "select interaction_id, _batch_id = %s from raw.interactions "
              "where _extract_date = %s order by 1", (ids[d30], d30)) == [
        ("d1", True), ("d2", True)]

    # Replay after the catalogue learns the touchpoint: the row joins its batch.
    lines = load_settings(None).reference.touchpoint_catalogue.read_text().splitlines()
    new = lines[-1].split(",")
    new[0], new[3] = "no_such_touchpoint", "99"
    (tmp_path / "catalogue.csv").write_text("\n".join([*lines, ",".join(new)]) + "\n")
    cfg.write_text(f"reference:\n  touchpoint_catalogue: {tmp_path / 'catalogue.csv'}\n"
                   "sources:\n  crm:\n    encoding: gb18030\n")
    load.refresh_reference(warehouse, load_settings(cfg, landing=str(landing),
                                                    home=str(tmp_path)))
    assert replay.replay_quarantine(warehouse, GxRunner(tmp_path, warehouse.sqlalchemy_url()),
                                    ids[d27]) == (1, 0)
    assert _q(warehouse, "select interaction_id, _row_number from raw.interactions "
              "where _batch_id = %s order by 2", (ids[d27],)) == [("a1", 1), ("a2", 2), ("a3", 3)]

    assert ingest("sources:\n  crm:\n    encoding: gb18030\n") == {}  # all known: skipped
    assert all(b.balanced for b in batches.reconcile(warehouse, E))
    # Nothing left behind: every table in raw_batches is a partition of raw.
    assert _q(warehouse, "select count(*) from pg_class where relkind = 'r' and not "
              "relispartition and relnamespace = 'raw_batches'::regnamespace") == [(0,)]


def test_loads_of_one_entity_wait_for_each_other_others_do_not(warehouse, tmp_path):
    """The load's lock is the entity's: a second load of it times out naming the entity,
    while another entity's lock is free; released, the entity can be taken again."""
    import threading

    from flows.errors import LockTimeoutError
    from flows.warehouse import entity_lock

    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with entity_lock(warehouse, E, 5):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(10)
        landing = tmp_path / "landing"
        _write(landing, DAYS[0], [_row("a1", DAYS[0])])
        s = load_settings(None, landing=str(landing), home=str(tmp_path))
        with pytest.raises(LockTimeoutError, match=f"_stage_{E}"):
            load.ingest_entity(warehouse, None, E, list(find_batches(s, DAYS[:1])), "t",
                               lock_timeout=0.3)
        with entity_lock(warehouse, "customers", 0.3):  # another entity: not blocked
            pass
    finally:
        release.set()
        t.join()
    with entity_lock(warehouse, E, 0.3):
        pass
    assert _q(warehouse, "select count(*) from ops.load_batches") == [(0,)]
