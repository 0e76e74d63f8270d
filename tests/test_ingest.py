"""Ingestion against the real embedded Postgres and real GX: nothing lost, nothing twice."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest

from flows import load, replay
from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration

D = date(2026, 8, 3)
HEADER = ",".join(ENTITIES["interactions"].column_names)
GOOD = [
    "i1,c1,billing,web,2026-08-03 10:00:00,30,200,true,true",
    "i2,c2,support_call,phone,2026-08-02 09:00:00,600,300,false,false",
    "i3,c1,app_usage,app,2026-08-03 11:00:00,,,true,false",
]
BAD = [
    "i4,c3,no_such_touchpoint,web,2026-08-03 10:00:00,1,1,true,true",  # unknown code
    "i5,,billing,web,2026-08-03 10:00:00,1,1,true,true",  # null customer
    "i6,c3,billing,fax,2026-08-03 10:00:00,1,1,true,true",  # unknown channel
    "i7,c3,billing,web,2026-08-09 10:00:00,1,1,true,true",  # after the extract date
    "i8,c3,billing,web,2026-08-03 10:00:00,abc,1,maybe,true",  # bad int, bad bool
    "i1,c1,billing,web,2026-08-03 10:00:00,30,200,true,true",  # duplicate id in batch
]


def _write(landing: Path, entity: str, day: date, lines: list[str], name: str | None = None,
           encoding: str = "utf-8", gz: bool = False) -> Path:
    e = ENTITIES[entity]
    folder = landing / e.source / entity / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{entity}_{day:%Y%m%d}.csv" + (".gz" if gz else ""))
    data = ("\n".join(lines) + "\n").encode(encoding)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _ingest(wh, landing: Path, home: Path, day: date = D):
    settings = load_settings(None, landing=str(landing), home=str(home))
    load.refresh_reference(wh, settings)
    gx = GxRunner(home, wh.sqlalchemy_url())
    batches = list(find_batches(settings, [day]))
    results = []
    for name in ENTITIES:
        mine = [b for b in batches if b.entity == name]
        if mine:
            results += load.ingest_entity(wh, gx, name, mine, "test-run")
    return results


def _catalogue_with(folder: Path, code: str) -> Path:
    """The default catalogue plus one touchpoint (a copy of its last row)."""
    lines = load_settings(None).reference.touchpoint_catalogue.read_text().splitlines()
    new = lines[-1].split(",")
    new[0], new[3] = code, "99"  # touchpoint_code, stage_order
    path = folder / "catalogue.csv"
    path.write_text("\n".join([*lines, ",".join(new)]) + "\n")
    return path


def _count(wh, table: str) -> int:
    with wh.transaction() as cur:
        cur.execute(f"select count(*) from {table}")
        return cur.fetchone()[0]


def test_good_rows_load_bad_rows_quarantine_with_reasons(warehouse, tmp_path):
    _write(tmp_path / "landing", "interactions", D, [HEADER, *GOOD, *BAD])
    [r] = _ingest(warehouse, tmp_path / "landing", tmp_path)
    assert r.status == "loaded"
    assert r.rows_in == 9 and r.rows_loaded == 3 and r.rows_quarantined == 6
    assert _count(warehouse, "raw.interactions") == 3
    with warehouse.transaction() as cur:
        cur.execute("select _row_number, failed_expectations from quarantine.interactions "
                    "order by _row_number")
        got = dict(cur.fetchall())
    assert got[4] == ["touchpoint_code_known"]
    assert got[5] == ["customer_id_not_null"]
    assert got[6] == ["channel_allowed"]
    assert got[7] == ["occurred_at_not_after_extract_date"]
    assert got[8] == ["resolved_is_boolean", "wait_seconds_is_integer"]
    assert got[9] == ["key_unique_in_batch"]
    with warehouse.transaction() as cur:
        cur.execute("select rows_in, rows_loaded, rows_quarantined, status from ops.load_batches")
        assert cur.fetchall() == [(9, 3, 6, "loaded")]
        cur.execute("select wait_seconds, resolved, _row_number, _source_file like %s "
                    "from raw.interactions where interaction_id = 'i2'", ("%interactions_%",))
        assert cur.fetchone() == (600, False, 2, True)


def test_a_key_three_times_quarantines_two_rows_and_null_keys_repeat_nothing(warehouse,
                                                                             tmp_path):
    """GX counts the repeats by aggregation and quarantine names them with a join: both
    must agree (the load stops on a mismatch), for a key seen three times and for rows
    whose key is empty, which fail not_null and repeat nothing."""
    no_id = ",c3,billing,web,2026-08-03 10:00:00,1,1,true,true"
    _write(tmp_path / "landing", "interactions", D,
           [HEADER, *GOOD, GOOD[0], GOOD[0], no_id, no_id])
    [r] = _ingest(warehouse, tmp_path / "landing", tmp_path)
    assert (r.status, r.rows_in, r.rows_loaded, r.rows_quarantined) == ("loaded", 7, 3, 4)
    with warehouse.transaction() as cur:
        cur.execute("select _row_number, failed_expectations from quarantine.interactions "
                    "order by _row_number")
        assert cur.fetchall() == [(4, ["key_unique_in_batch"]), (5, ["key_unique_in_batch"]),
                                  (6, ["interaction_id_not_null"]),
                                  (7, ["interaction_id_not_null"])]


def test_loading_the_same_files_twice_is_a_no_op(warehouse, tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD])
    first = _ingest(warehouse, landing, tmp_path)
    second = _ingest(warehouse, landing, tmp_path)
    assert [r.status for r in first] == ["loaded"]
    assert [r.status for r in second] == ["skipped"]
    assert _count(warehouse, "raw.interactions") == 3
    assert _count(warehouse, "ops.load_batches") == 1


def test_redelivered_file_supersedes_the_earlier_batch(warehouse, tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD[:2]])
    _ingest(warehouse, landing, tmp_path)
    _write(landing, "interactions", D, [HEADER, *GOOD])
    _ingest(warehouse, landing, tmp_path)
    with warehouse.transaction() as cur:
        cur.execute("select status, rows_loaded from ops.load_batches order by started_at")
        assert cur.fetchall() == [("superseded", 2), ("loaded", 3)]


@pytest.mark.parametrize(
    ("lines", "encoding", "expected"),
    [
        ([HEADER.replace("channel", "kanal"), *GOOD], "utf-8", "missing column(s) channel"),
        ([HEADER.replace(",wait_seconds", ""), "i1,c1,billing,web,2026-08-03,200,true,true"],
         "utf-8", "missing column(s) wait_seconds"),
        ([HEADER, *GOOD, "i9,c1,billing,we"], "utf-8", "line 5"),
        ([HEADER, "i1,c1,billing,web,2026-08-03 10:00:00,1,1,true,true,评论"], "gb18030",
         "line 2"),
        ([], "utf-8", "empty file"),
    ],
    ids=["renamed-column", "missing-column", "truncated", "wrong-encoding", "empty"],
)
def test_structural_failures_reject_the_batch_and_name_file_and_problem(
        warehouse, tmp_path, lines, encoding, expected):
    landing = tmp_path / "landing"
    path = _write(landing, "interactions", D, lines or [""], encoding=encoding)
    # Another entity of the same day still loads.
    _write(landing, "orders", D, [",".join(ENTITIES["orders"].column_names),
                                  "o1,c1,2026-08-03,19.90"])
    results = {r.entity: r for r in _ingest(warehouse, landing, tmp_path)}
    bad = results["interactions"]
    assert bad.status == "rejected"
    assert str(path) in bad.error and expected in bad.error
    assert results["orders"].status == "loaded"
    assert _count(warehouse, "raw.interactions") == 0
    assert _count(warehouse, "raw.orders") == 1


def test_gb18030_source_and_gzip_load(warehouse, tmp_path):
    landing = tmp_path / "landing"
    cols = ENTITIES["responses"].column_names
    row = ("r1,v1,c1,transactional,billing,2026-08-01 10:00:00,2026-08-02 10:00:00,"
           "9,5,6,9,5,账单清楚，谢谢,zh")
    _write(landing, "responses", D, [",".join(cols), row], encoding="gb18030", gz=True)
    settings_file = tmp_path / "cxloop.yml"
    settings_file.write_text("sources:\n  crm: {}\n  survey:\n    encoding: gb18030\n")
    settings = load_settings(settings_file, landing=str(landing), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    gx = GxRunner(tmp_path, warehouse.sqlalchemy_url())
    [b] = list(find_batches(settings, [D]))
    [r] = load.ingest_entity(warehouse, gx, "responses", [b], "t")
    assert r.status == "loaded" and r.rows_loaded == 1
    with warehouse.transaction() as cur:
        cur.execute("select comment from raw.responses")
        assert cur.fetchone()[0] == "账单清楚，谢谢"


def test_quarantine_replay_after_a_reference_fix(warehouse, tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD, BAD[0]])  # unknown touchpoint
    [r] = _ingest(warehouse, landing, tmp_path)
    assert (r.rows_loaded, r.rows_quarantined) == (3, 1)
    # The catalogue learns the new touchpoint; the quarantined row now passes.
    catalogue = _catalogue_with(tmp_path, "no_such_touchpoint")
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text(f"reference:\n  touchpoint_catalogue: {catalogue}\n")
    settings = load_settings(cfg, landing=str(landing), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    moved, kept = replay.replay_quarantine(warehouse,
                                           GxRunner(tmp_path, warehouse.sqlalchemy_url()),
                                           r.batch_id)
    assert (moved, kept) == (1, 0)
    assert _count(warehouse, "raw.interactions") == 4
    assert _count(warehouse, "quarantine.interactions") == 0
    with warehouse.transaction() as cur:
        cur.execute("select rows_in, rows_loaded, rows_quarantined from ops.load_batches")
        assert cur.fetchone() == (4, 4, 0)
        cur.execute("select _row_number from raw.interactions "
                    "where touchpoint_code = 'no_such_touchpoint'")
        assert cur.fetchone() == (4,)


def test_sql_source_reads_the_day_window_as_bound_parameters(warehouse, tmp_path, monkeypatch):
    """A PostgreSQL source: one query per entity, the run date's window bound, a batch by hash."""
    from flows.extract import find_batches as find

    with warehouse.transaction() as cur:
        cur.execute("create schema src; create table src.orders (order_id text, customer_id "
                    "text, order_date date, amount numeric)")
        cur.execute("insert into src.orders values ('o1', 'c1', '2026-08-02', 10), "
                    "('o2', 'c2', '2026-08-03', 20.5), ('o3', 'c3', '2026-08-04', 30)")
    monkeypatch.setenv("CRM_DB_URL", warehouse.url)
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text(
        "sources:\n  crm_db:\n    kind: sql\n    url_env: CRM_DB_URL\n    queries:\n"
        "      orders: select order_id, customer_id, order_date, amount from src.orders "
        "where order_date >= %(start)s and order_date < %(end)s\n")
    settings = load_settings(cfg, landing=str(tmp_path / "none"), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    [b] = list(find(settings, [D]))
    assert b.source == "crm_db" and b.entity == "orders"
    gx = GxRunner(tmp_path, warehouse.sqlalchemy_url())
    [r] = load.ingest_entity(warehouse, gx, "orders", [b], "t")
    assert (r.status, r.rows_in, r.rows_loaded) == ("loaded", 1, 1)
    with warehouse.transaction() as cur:
        cur.execute("select order_id, amount from raw.orders")
        assert cur.fetchall() == [("o2", 20.5)]
    # The same result again is the same batch: a no-op.
    [again] = load.ingest_entity(warehouse, gx, "orders", list(find(settings, [D])), "t")
    assert again.status == "skipped"


def test_an_alerts_run_reads_a_sql_source_s_day_so_far_and_the_night_finds_it_loaded(
        warehouse, tmp_path, monkeypatch):
    """Intra-day, a SQL source is read for the day up to now; the next read replaces the
    earlier one like a re-delivered file, a read with nothing new is the same batch, and
    the night's whole day, when it holds nothing more, is already loaded."""
    from datetime import UTC, datetime

    from flows.alerts import alert_batches

    with warehouse.transaction() as cur:
        cur.execute("create schema shop; create table shop.orders (order_id text, customer_id "
                    "text, order_date date, amount numeric, created_at timestamp)")
        cur.execute("insert into shop.orders values "
                    "('s1', 'c1', '2026-08-03', 10, '2026-08-03 08:00'), "
                    "('s2', 'c2', '2026-08-03', 20, '2026-08-03 10:00'), "
                    "('s3', 'c3', '2026-08-04', 30, '2026-08-04 01:00')")
    monkeypatch.setenv("SHOP_DB_URL", warehouse.url)
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text(
        "sources:\n  shop_db:\n    kind: sql\n    url_env: SHOP_DB_URL\n    timezone: UTC\n"
        "    queries:\n      orders: select order_id, customer_id, order_date, amount "
        "from shop.orders where created_at >= %(start)s and created_at < %(end)s\n")
    settings = load_settings(cfg, landing=str(tmp_path / "none"), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    gx = GxRunner(tmp_path, warehouse.sqlalchemy_url())

    def alerts_read(hour: int) -> load.BatchResult:
        at = datetime(2026, 8, 3, hour, tzinfo=UTC)
        [r] = load.ingest_entity(warehouse, gx, "orders",
                                 alert_batches(settings, D, ["orders"], at), "t")
        return r

    first = alerts_read(9)
    assert (first.status, first.rows_loaded) == ("loaded", 1)
    second = alerts_read(11)
    assert (second.status, second.rows_loaded) == ("loaded", 2)
    assert second.change is not None and second.change.replaces == [first.batch_id]
    assert alerts_read(12).status == "skipped"
    [night] = load.ingest_entity(warehouse, gx, "orders", list(find_batches(settings, [D])), "t")
    assert night.status == "skipped" and night.batch_id == second.batch_id
    with warehouse.transaction() as cur:
        cur.execute("select order_id from raw.orders where order_id like 's%' order by 1")
        assert cur.fetchall() == [("s1",), ("s2",)]
        cur.execute("select status from ops.load_batches where batch_id = %s", (first.batch_id,))
        assert cur.fetchone() == ("superseded",)


def test_a_clean_file_is_copied_once_into_its_own_partition_of_raw(warehouse, tmp_path):
    """Values that all parse: the file is COPYed typed and that table becomes the batch's
    partition; rule failures still quarantine with the rows' values as text."""
    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD, BAD[2], BAD[5]])  # no parse errors
    [r] = _ingest(warehouse, landing, tmp_path)
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined) == (5, 3, 2)
    with warehouse.transaction() as cur:
        cur.execute("select c.relnamespace::regnamespace::text, c.relname, "
                    "pg_get_expr(c.relpartbound, c.oid) from pg_inherits i "
                    "join pg_class c on c.oid = i.inhrelid "
                    "where i.inhparent = 'raw.interactions'::regclass")
        assert cur.fetchall() == [("raw_batches", f"interactions__{r.batch_id}",
                                   f"FOR VALUES IN ('{r.batch_id}')")]
        cur.execute("select _row_number, raw_values, failed_expectations "
                    "from quarantine.interactions order by 1")
        got = cur.fetchall()
        assert [(n, f) for n, _, f in got] == [(4, ["channel_allowed"]),
                                               (5, ["key_unique_in_batch"])]
        assert got[0][1]["wait_seconds"] == "1" and got[0][1]["channel"] == "fax"
        cur.execute("select interaction_id, _row_number, _batch_id = %s, _extract_date, "
                    "_loaded_at is not null from raw.interactions order by 2", (r.batch_id,))
        assert cur.fetchall() == [("i1", 1, True, D, True), ("i2", 2, True, D, True),
                                  ("i3", 3, True, D, True)]
        # The stage is gone; nothing is left outside raw.
        cur.execute("select count(*) from pg_class where relnamespace = 'raw_batches'::regnamespace"
                    " and relkind = 'r' and not relispartition")
        assert cur.fetchone()[0] == 0


def test_a_warehouse_from_before_partitioning_is_migrated_without_losing_rows(warehouse, tmp_path):
    from psycopg2 import sql

    from flows.warehouse import LINEAGE_COLUMNS, migrate

    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD, BAD[0]])
    [r] = _ingest(warehouse, landing, tmp_path)
    # Rebuild raw.interactions the way earlier versions kept it: one plain table.
    e = ENTITIES["interactions"]
    # (and before `attributes`: the migration adds it to the old table's rows too).
    cols = [f'"{c.name}" {c.pg_type}' for c in e.columns] + [f"{n} {t}" for n, t in LINEAGE_COLUMNS]
    names = ", ".join([f'"{c}"' for c in e.column_names] + [n for n, _ in LINEAGE_COLUMNS])
    with warehouse.transaction() as cur:
        cur.execute(f"create table public.keep as select {names} from raw.interactions")
        cur.execute("drop table raw.interactions")
        cur.execute(sql.SQL("create table raw.interactions ({})").format(sql.SQL(", ".join(cols))))
        cur.execute("insert into raw.interactions select * from public.keep")
    conn = warehouse.connect()
    migrate(conn)
    migrate(conn)  # idempotent
    conn.close()
    with warehouse.transaction() as cur:
        cur.execute("select relkind from pg_class where oid = 'raw.interactions'::regclass")
        assert cur.fetchone()[0] == "p"
        cur.execute("select count(*) from raw.interactions")
        assert cur.fetchone()[0] == 3
    # New batches load beside the old rows, and a replay still reaches the old batch.
    _write(landing, "interactions", date(2026, 8, 4), [HEADER, "i9,c9,billing,web,"
                                                       "2026-08-04 10:00:00,1,1,true,true"])
    assert [x.status for x in _ingest(warehouse, landing, tmp_path, date(2026, 8, 4))] == ["loaded"]
    catalogue = _catalogue_with(tmp_path, "no_such_touchpoint")
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text(f"reference:\n  touchpoint_catalogue: {catalogue}\n")
    load.refresh_reference(warehouse, load_settings(cfg, landing=str(landing), home=str(tmp_path)))
    assert replay.replay_quarantine(warehouse, GxRunner(tmp_path, warehouse.sqlalchemy_url()),
                                  r.batch_id) == (1, 0)
    assert _count(warehouse, "raw.interactions") == 5


def test_data_docs_show_this_runs_validations(warehouse, tmp_path):
    from datetime import UTC, datetime

    landing = tmp_path / "landing"
    _write(landing, "interactions", D, [HEADER, *GOOD, BAD[0], BAD[4]])  # text-staged
    since = datetime.now(UTC)
    _ingest(warehouse, landing, tmp_path)
    site = Path(GxRunner(tmp_path, warehouse.sqlalchemy_url()).build_docs(since))
    assert site.name == "index.html" and site.exists()
    pages = {p.relative_to(site.parent).parts[:2] for p in site.parent.rglob("*.html")}
    # Both parts of the suite ran, and their suites and results have pages.
    assert ("validations", "cxloop_interactions") in pages
    assert ("validations", "cxloop_interactions_parse") in pages
    assert ("expectations", "cxloop_interactions.html") in pages
    assert "cxloop_interactions_parse" in site.read_text()
