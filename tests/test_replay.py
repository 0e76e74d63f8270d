"""Bulk quarantine replay: after a reference fix, one command moves the now-valid rows of
every batch of an entity (or of all entities) to raw (real Postgres and GX)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import load, replay
from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration

DAYS = [date(2026, 8, 1) + timedelta(days=i) for i in range(4)]
NEW_TP = "no_such_touchpoint"


def _write(landing: Path, entity: str, day: date, rows: list[str]) -> None:
    e = ENTITIES[entity]
    folder = landing / e.source / entity / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{entity}_{day:%Y%m%d}.csv").write_text(
        "\n".join([",".join(e.column_names), *rows]) + "\n", encoding="utf-8")


def _interactions(day: date) -> list[str]:
    at = f"{day} 10:00:00"
    n = day.day
    return [
        f"i{n}a,c1,billing,web,{at},30,200,true,true",
        f"i{n}b,c2,{NEW_TP},phone,{at},600,300,false,false",  # unknown until the fix
        f"i{n}c,c3,{NEW_TP},fax,{at},1,1,true,true",  # unknown channel too: stays
        f"i{n}a,c1,{NEW_TP},web,{at},30,200,true,true",  # repeats a loaded key: stays
    ]


def _q(wh, query: str, *args):
    with wh.transaction() as cur:
        cur.execute(query, args)
        return cur.fetchall()


@pytest.fixture()
def landed(warehouse, tmp_path):
    """Four days of interactions and one of responses, loaded; each batch with rows
    quarantined for a touchpoint the catalogue does not know yet."""
    landing = tmp_path / "landing"
    for day in DAYS:
        _write(landing, "interactions", day, _interactions(day))
    _write(landing, "responses", DAYS[0], [
        f"r1,v1,c1,transactional,{NEW_TP},2026-07-31 10:00:00,2026-08-01 09:00:00,"
        "9,5,6,9,5,fine,en"])
    settings = load_settings(None, landing=str(landing), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    gx = GxRunner(tmp_path, warehouse.sqlalchemy_url())
    batches = list(find_batches(settings, DAYS))
    for name in ("interactions", "responses"):
        results = load.ingest_entity(warehouse, gx, name,
                                     [b for b in batches if b.entity == name], "t")
        assert all(r.status == "loaded" and r.rows_quarantined > 0 for r in results)
    # The fix: the catalogue learns the touchpoint.
    default = Path(settings.reference.touchpoint_catalogue).read_text(encoding="utf-8")
    catalogue = tmp_path / "catalogue.csv"
    fields = default.splitlines()[0].split(",")
    first = default.splitlines()[1].split(",")
    new = {"touchpoint_code": NEW_TP, "stage_order": "99"}  # both unique in the catalogue
    catalogue.write_text(default.rstrip("\n") + "\n" + ",".join(
        new.get(f, first[i]) for i, f in enumerate(fields)) + "\n", encoding="utf-8")
    cfg = tmp_path / "cxloop.yml"
    cfg.write_text(f"landing: {landing}\nreference:\n  touchpoint_catalogue: {catalogue}\n")
    return cfg


def _cli(warehouse, home: Path, monkeypatch, *args: str):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("CXLOOP_WAREHOUSE_URL", warehouse.url)
    monkeypatch.setenv("CXLOOP_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner().invoke(app, ["quarantine", "replay", *args])


def test_bulk_replay_moves_the_rows_of_every_batch_in_one_call(warehouse, landed, tmp_path,
                                                               monkeypatch):
    since = DAYS[1]
    res = _cli(warehouse, tmp_path, monkeypatch, "--entity", "interactions",
               "--since", since.isoformat(), "--config", str(landed))
    assert res.exit_code == 0, res.output
    # Three batches replayed, one row each moved, the repeat and the bad channel kept.
    assert "3 batch(es)" in res.output and "GX Data Docs" in res.output
    rows = _q(warehouse, "select extract_date, rows_in, rows_loaded, rows_quarantined "
              "from ops.load_batches where entity = 'interactions' order by 1")
    assert rows == [(DAYS[0], 4, 1, 3)] + [(d, 4, 2, 2) for d in DAYS[1:]]
    moved = _q(warehouse, "select _extract_date, interaction_id, _row_number from "
               "raw.interactions where touchpoint_code = %s order by 1", NEW_TP)
    assert moved == [(d, f"i{d.day}b", 2) for d in DAYS[1:]]
    kept = _q(warehouse, "select _extract_date, _row_number, failed_expectations "
              "from quarantine.interactions where _extract_date >= %s order by 1, 2", since)
    assert kept == [x for d in DAYS[1:] for x in ((d, 3, ["channel_allowed"]),
                                                   (d, 4, ["key_unique_in_batch"]))]
    # Each batch's rows in raw are its own partition's: nothing was loaded twice.
    assert _q(warehouse, "select count(*), count(distinct (_batch_id, _row_number)) "
              "from raw.interactions") == [(1 + 2 * 3, 1 + 2 * 3)]
    # Other entities were left alone.
    assert _q(warehouse, "select count(*) from quarantine.responses") == [(1,)]

    # Again: nothing left that a fix made valid, but the rows still quarantined are
    # re-judged (same outcome); before the date, nothing at all.
    res = _cli(warehouse, tmp_path, monkeypatch, "--entity", "interactions", "--since",
               DAYS[-1].isoformat(), "--config", str(landed))
    assert res.exit_code == 0 and "1 batch(es)" in res.output, res.output
    assert _q(warehouse, "select count(*) from raw.interactions") == [(7,)]

    # --all: the older batch and the other entity too.
    res = _cli(warehouse, tmp_path, monkeypatch, "--all", "--config", str(landed))
    assert res.exit_code == 0, res.output
    assert "5 batch(es)" in res.output
    assert _q(warehouse, "select count(*) from raw.interactions") == [(8,)]
    assert _q(warehouse, "select count(*) from quarantine.responses") == [(0,)]
    assert _q(warehouse, "select count(*) from raw.responses") == [(1,)]


def test_bulk_replay_with_nothing_to_replay_says_so(warehouse, tmp_path, monkeypatch):
    res = _cli(warehouse, tmp_path, monkeypatch, "--entity", "orders")
    assert res.exit_code == 0, res.output
    assert "nothing to replay" in res.output and "orders" in res.output


@pytest.mark.parametrize("args, message", [
    (["abc123", "--entity", "interactions"], "not both"),
    (["--entity", "interactions", "--all"], "not both"),
    ([], "say what to replay"),
    (["--entity", "intractions"], "unknown entity 'intractions'"),
    (["--entity", "interactions", "--since", "last week"], "YYYY-MM-DD"),
    (["abc123", "--since", "2026-08-01"], "--since"),
])
def test_bulk_replay_bad_arguments(tmp_path, monkeypatch, args, message):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("CXLOOP_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["quarantine", "replay", *args])
    assert res.exit_code == 2
    assert message in res.output


def test_replaying_one_batch_still_works_and_keeps_repeated_keys(warehouse, landed):
    settings = load_settings(landed, home=str(landed.parent))
    load.refresh_reference(warehouse, settings)
    [(batch_id,)] = _q(warehouse, "select batch_id from ops.load_batches "
                       "where entity = 'interactions' and extract_date = %s", DAYS[2])
    gx = GxRunner(landed.parent, warehouse.sqlalchemy_url())
    assert replay.replay_quarantine(warehouse, gx, batch_id) == (1, 2)
    assert replay.batches_to_replay(warehouse, "interactions", DAYS[3]) == \
        [b for b in replay.batches_to_replay(warehouse, "interactions") if b.extract_date == DAYS[3]]


def test_a_replay_killed_between_batches_then_rerun_loses_and_doubles_nothing(
        warehouse, landed, tmp_path):
    """Each batch commits alone: a replay killed after the first leaves that batch replayed
    and the rest untouched; the re-run finishes them and the stage is cleared."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CXLOOP_HOME": str(tmp_path), "CXLOOP_WAREHOUSE_URL": warehouse.url,
           "CXLOOP_FAILPOINT": "replay:after-batch-commit", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "flows", "quarantine", "replay", "--entity", "interactions",
           "--config", str(landed)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 137, res.stderr
    counts = _q(warehouse, "select extract_date, rows_loaded, rows_quarantined "
                "from ops.load_batches where entity = 'interactions' order by 1")
    assert counts == [(DAYS[0], 2, 2)] + [(d, 1, 3) for d in DAYS[1:]]
    env.pop("CXLOOP_FAILPOINT")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    counts = _q(warehouse, "select extract_date, rows_in, rows_loaded, rows_quarantined "
                "from ops.load_batches where entity = 'interactions' order by 1")
    assert counts == [(d, 4, 2, 2) for d in DAYS]
    assert _q(warehouse, "select count(*), count(distinct (_batch_id, _row_number)) "
              "from raw.interactions") == [(8, 8)]
    assert _q(warehouse, "select count(*) from quarantine.interactions") == [(8,)]
    # Nothing left behind: no stage, no replay table outside raw.
    assert _q(warehouse, "select count(*) from pg_class where relnamespace = "
              "'raw_batches'::regnamespace and relkind = 'r' and not relispartition") == [(0,)]
    assert _q(warehouse, "select to_regclass('raw._stage_interactions')") == [(None,)]
