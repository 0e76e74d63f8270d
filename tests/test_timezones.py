"""Timestamps are instants: an offset is kept, a naive value takes its source's zone.

Raw stores ``timestamptz``. ``2026-08-03T23:30+08:00`` is 15:30 UTC whatever the zones;
a timezone-aware parquet column keeps its instant; a naive timestamp is read in
``sources.<src>.timezone`` (default the top-level ``timezone``). Days (the extract date a
timestamp is checked against, dbt's run date, staging's wall-clock times) are days of the
top-level ``timezone``, because every session the pipeline opens runs in it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flows import load
from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner
from flows.warehouse import Warehouse, migrate

pytestmark = pytest.mark.integration

D = date(2026, 8, 3)
HOME_ZONE, CRM_ZONE = "Asia/Shanghai", "Europe/Berlin"  # +08:00 and +02:00 in August
INTERACTION = "{id},c1,billing,web,{at},30,300,true,true"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _csv(folder, name: str, entity: str, rows: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(",".join(ENTITIES[entity].column_names) + "\n"
                               + "\n".join(rows) + "\n")


def _parquet(path, ids: list[str], at: pa.Array) -> None:
    n = len(ids)
    pq.write_table(pa.table({
        "interaction_id": ids, "customer_id": ["c1"] * n, "touchpoint_code": ["billing"] * n,
        "channel": ["web"] * n, "occurred_at": at, "wait_seconds": pa.array([30] * n),
        "handle_seconds": pa.array([300] * n), "resolved": [True] * n,
        "first_contact_resolution": [True] * n}), path)


def test_offsets_parquet_zones_and_naive_timestamps_land_as_the_right_instant(warehouse,
                                                                              tmp_path):
    landing = tmp_path / "landing"
    crm = landing / "crm" / "interactions" / D.isoformat()
    _csv(crm, "a.csv", "interactions", [
        INTERACTION.format(id="offset", at="2026-08-03T23:30+08:00"),
        INTERACTION.format(id="naive", at="2026-08-03 10:00:00"),
        # 17:00 UTC on the 3rd, but the 4th in the configured zone: after the extract date.
        INTERACTION.format(id="tomorrow_here", at="2026-08-04T01:00+08:00"),
    ])
    # A value that does not parse sends the file to the text stage, then the cast path.
    _csv(crm, "b.csv", "interactions", [
        INTERACTION.format(id="bad_int", at="2026-08-03 11:00:00").replace(",30,", ",abc,"),
        INTERACTION.format(id="naive_cast", at="2026-08-03 12:00:00"),
    ])
    ny = timezone(timedelta(hours=-4))  # New York in August
    _parquet(crm / "c.parquet", ["pq_aware"], pa.array(
        [datetime(2026, 8, 3, 6, 0, tzinfo=ny)], pa.timestamp("us", tz="America/New_York")))
    _parquet(crm / "d.parquet", ["pq_naive"], pa.array(
        [datetime(2026, 8, 3, 14, 0)], pa.timestamp("us")))
    _csv(landing / "survey" / "invitations" / D.isoformat(), "i.csv", "invitations",
         ["v1,c1,relationship,,,2026-08-03 09:00:00"])
    config = tmp_path / "cxloop.yml"
    config.write_text(yaml.safe_dump({"timezone": HOME_ZONE,
                                      "sources": {"crm": {"timezone": CRM_ZONE}, "survey": {}}}))
    settings = load_settings(config, landing=str(landing), home=str(tmp_path / "home"))
    wh = dataclasses.replace(warehouse, timezone=settings.timezone)
    load.refresh_reference(wh, settings)
    gx = GxRunner(tmp_path / "home", wh.sqlalchemy_url())
    batches = list(find_batches(settings, [D]))
    results = []
    for entity in ("interactions", "invitations"):
        results += load.ingest_entity(wh, gx, entity, [b for b in batches if b.entity == entity],
                                      "tz-test")
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]

    with wh.transaction() as cur:
        cur.execute("select interaction_id, occurred_at from raw.interactions")
        got = dict(cur.fetchall())
        cur.execute("select raw_values ->> 'interaction_id', failed_expectations, "
                    "raw_values ->> 'occurred_at', reasons from quarantine.interactions "
                    "order by 1")
        quarantined = cur.fetchall()
        cur.execute("select sent_at from raw.invitations")
        [(sent_at,)] = cur.fetchall()
    assert got == {
        "offset": _utc(2026, 8, 3, 15, 30),      # the offset wins over both zones
        "naive": _utc(2026, 8, 3, 8, 0),         # crm's zone, +02:00
        "naive_cast": _utc(2026, 8, 3, 10, 0),   # the same through the text stage
        "pq_aware": _utc(2026, 8, 3, 10, 0),     # parquet's zone kept, not shifted
        "pq_naive": _utc(2026, 8, 3, 12, 0),     # naive parquet: crm's zone
    }
    assert sent_at == _utc(2026, 8, 3, 1, 0)     # survey has no zone: the top-level one
    assert [(q[0], q[1]) for q in quarantined] == [
        ("bad_int", ["wait_seconds_is_integer"]),
        ("tomorrow_here", ["occurred_at_not_after_extract_date"])]
    # A quarantined typed row keeps its offset, so a replay restores the same instant.
    assert quarantined[1][2] == "2026-08-04 01:00:00+08"
    assert quarantined[1][3].endswith("(occurred_at = 2026-08-04 01:00:00+08)")

    # Staging casts to wall-clock times (timestamp) in the session's zone. dbt's sessions
    # run in the configured one (tests/test_plausible.py checks a mart's days); any other
    # session (psql, BI) gets it as the database's default, set by refresh_reference.
    with warehouse.transaction() as cur:  # no zone asked for
        cur.execute("select occurred_at::timestamp from raw.interactions "
                    "where interaction_id = 'offset'")
        assert cur.fetchone()[0] == datetime(2026, 8, 3, 23, 30)


def test_naive_raw_timestamps_of_an_older_warehouse_become_instants(warehouse):
    """The migration retypes the partitioned table (each partition with it) and the tables
    of replaced deliveries, reads the old wall-clock values in the configured zone,
    survives a view on it, and is idempotent."""
    with warehouse.transaction() as cur:
        cur.execute("alter table raw.interactions alter column occurred_at type timestamp")
        cur.execute("create table raw_batches.old_batch partition of raw.interactions "
                    "for values in ('b1')")
        cur.execute("insert into raw.interactions (interaction_id, occurred_at, _batch_id, "
                    "_source_file, _row_number, _extract_date) values "
                    "('i1', '2026-08-03 23:30', 'b1', 'old.csv', 1, '2026-08-03')")
        cur.execute("create view staging.v_old as select occurred_at from raw.interactions")
        # A delivery a correction replaced, set aside before the migration.
        cur.execute("create table raw_superseded.interactions__b0 (like raw.interactions)")
    zoned = Warehouse(url=warehouse.url, pgdata=warehouse.pgdata, timezone=HOME_ZONE)
    for _ in range(2):
        conn = zoned.connect()
        try:
            migrate(conn)
        finally:
            conn.close()
    with warehouse.transaction() as cur:
        cur.execute("select table_schema, data_type from information_schema.columns "
                    "where column_name = 'occurred_at' and table_name in "
                    "('interactions', 'old_batch', 'interactions__b0') "
                    "and table_schema like 'raw%%' order by 1")
        assert cur.fetchall() == [("raw", "timestamp with time zone"),
                                  ("raw_batches", "timestamp with time zone"),
                                  ("raw_superseded", "timestamp with time zone")]
        cur.execute("select occurred_at from raw.interactions")
        assert cur.fetchone()[0] == _utc(2026, 8, 3, 15, 30)
        cur.execute("select to_regclass('staging.v_old')")
        assert cur.fetchone()[0] is None  # dropped; dbt builds its views again


def test_an_unknown_source_zone_stops_before_loading(tmp_path):
    from flows.errors import ConfigError

    config = tmp_path / "cxloop.yml"
    config.write_text("sources:\n  crm:\n    timezone: Mars/Olympus\n  survey: {}\n")
    with pytest.raises(ConfigError, match=r"sources\.crm\.timezone: .*unknown timezone 'Mars"):
        load_settings(config)


def test_dbt_sessions_get_the_configured_work_mem(warehouse, monkeypatch):
    """dbt connects through libpq, which reads PGOPTIONS: the configured dbt_work_mem is
    what its sessions sort and hash in, added to the caller's own options; None keeps the
    server's setting."""
    import psycopg2

    from flows.config import Settings
    from flows.transform import dbt_env

    def session(settings: Settings) -> tuple[str, str]:
        env = dbt_env(warehouse, settings)
        with monkeypatch.context() as m:
            for key in ("PGOPTIONS", "PGTZ"):
                m.delenv(key, raising=False)
            for key, value in env.items():
                if key in ("PGOPTIONS", "PGTZ"):
                    m.setenv(key, value)
            conn = psycopg2.connect(warehouse.url)
        try:
            with conn.cursor() as cur:
                cur.execute("select current_setting('work_mem'), current_setting('lock_timeout')")
                return cur.fetchone()
        finally:
            conn.close()

    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=5s")
    assert session(Settings(dbt_work_mem="96MB")) == ("96MB", "5s")
    assert Settings().dbt_work_mem == "128MB"
    monkeypatch.delenv("PGOPTIONS")
    default = session(Settings(dbt_work_mem=None))[0]
    assert default != "96MB"
    with pytest.raises(ValueError, match="memory size"):
        Settings(dbt_work_mem="lots")
