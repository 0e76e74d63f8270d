"""Corrections that replace: a re-delivered day supersedes the earlier batch's rows.

One warehouse for the module, tiny hand-made survey extracts, real GX and real dbt:

1. day D's responses arrive (a detractor answered six days earlier, two more answers on
   D, one row that fails validation); the marts are built and a detractor task opens;
2. the sender re-delivers ``responses.csv`` for D: the detractor's row is gone, one score
   changed, one answer added. Staging and the marts (fct_touchpoint_daily is incremental,
   and the removed answer's day lies outside its look-back) serve only the correction,
   the replaced batch is kept in ``raw_superseded``, its quarantined row cannot be
   replayed, the change is counted in ``ops.batch_changes`` and the task is cleared, not
   deleted;
3. re-running the same correction changes nothing;
4. under ``corrections: newest_of_day`` a file with a new name replaces the day; under
   the default rule it is one more file of the day.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from flows import actions, load, replay, report, transform
from flows.config import load_settings
from flows.entities import ENTITIES, SURVEY_TYPES
from flows.errors import CxloopError
from flows.extract import find_batches
from flows.validate import GxRunner
from flows.warehouse import Warehouse, migrate

pytestmark = pytest.mark.integration

D = date(2026, 8, 10)
EARLY = D - timedelta(days=6)  # outside fct_touchpoint_daily's 3-day look-back
COLS = ENTITIES["responses"].column_names
# What the test builds: the incremental scorecard fact and everything under it.
SELECT = "+fct_touchpoint_daily"
# A detractor call-back over staging only (the shipped rule also reads the churn marts,
# which need the whole pipeline): its candidates are a view with the candidate contract's
# columns, as a user's own rule model would be; tasks.yml holds only the policy.
RULES = """
rules:
  - name: detractor_call_back
    subject: customer
    period: day
    severity: 3
    sla_hours: 48
    title: "Call back {subject_id}"
"""
CANDIDATES = """
create or replace view intermediate.int_task_candidates__detractor_call_back as
select %(d)s::date as as_of_date, customer_id as subject_id,
       to_char(responded_at, 'YYYY-MM-DD') as period, 'customer'::text as routing_key,
       null::text as region, null::text as segment, 'test_team'::text as owner_team,
       'test.person'::text as owner_person, 'test.lead'::text as escalation_owner,
       false as routed_to_fallback, null::boolean as marketing_consent,
       null::numeric(14, 2) as value_at_risk, 0::double precision as priority_score,
       null::text as priority_reason,
       jsonb_build_object('response_id', response_id, 'nps', nps) as evidence
from staging.stg_survey__responses
where nps <= 6
  and responded_at >= %(d)s::date - 7 and responded_at < %(d)s::date + 1
"""


def _touchpoint(settings) -> str:
    with open(settings.reference.touchpoint_catalogue, newline="", encoding="utf-8") as f:
        return next(csv.DictReader(f))["touchpoint_code"]


def _response(rid: str, customer: str, tp: str, at: date, hour: int, nps: int | str,
              comment: str = "") -> dict[str, str]:
    return {"response_id": rid, "invitation_id": f"v{rid}", "customer_id": customer,
            "survey_type": SURVEY_TYPES[0], "touchpoint_code": tp,
            "invited_at": f"{at - timedelta(days=1)} 08:00:00",
            "responded_at": f"{at} {hour:02d}:00:00", "nps": str(nps), "comment": comment}


def _write(landing: Path, day: date, name: str, rows: list[dict[str, str]],
           mtime: float | None = None) -> Path:
    path = landing / "survey" / "responses" / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        w.writeheader()
        w.writerows(rows)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _q(wh: Warehouse, query: str, params: tuple | dict = ()) -> list[tuple]:
    with wh.transaction() as cur:
        cur.execute(query, params)
        return cur.fetchall()


class World:
    """The module's warehouse, configuration and what each step returned."""

    def __init__(self, wh: Warehouse, root: Path):
        self.wh, self.root = wh, root
        self.landing = root / "landing"
        (root / "tasks.yml").write_text(RULES)
        self.steps: dict[str, list[load.BatchResult]] = {}
        self.facts: dict[str, dict] = {}

    def settings(self, corrections: str = "same_name"):
        cfg = self.root / f"cxloop-{corrections}.yml"
        cfg.write_text(f"landing: {self.landing}\nhome: {self.root / 'home'}\n"
                       f"tasks: {self.root / 'tasks.yml'}\n"
                       f"sources:\n  crm: {{}}\n  survey:\n    corrections: {corrections}\n")
        return load_settings(cfg)

    def ingest(self, day: date, corrections: str = "same_name") -> list[load.BatchResult]:
        s = self.settings(corrections)
        load.refresh_reference(self.wh, s)
        gx = GxRunner(s.home, self.wh.sqlalchemy_url())
        return load.ingest_entity(self.wh, gx, "responses", list(find_batches(s, [day])),
                                  "test-run")

    def build_and_derive(self) -> actions.TaskStats:
        s = self.settings()
        # Models and seeds only: the point here is what they hold, and dbt's tests over
        # models outside the selection would fail for want of their tables.
        out = transform.run_dbt(self.wh, s, ["build", "--select", SELECT, "--resource-type",
                                             "model", "--resource-type", "seed"], D)
        assert out.success, out.failures
        with self.wh.transaction() as cur:
            cur.execute(CANDIDATES, {"d": D})
        rules = actions.load_rules(s.tasks)
        return actions.derive_tasks(self.wh, rules, actions.Router(s.reference.owner_routing),
                                    D, "test-run")

    def fact(self, day: date) -> tuple:
        rows = _q(self.wh, "select sum(n_responses), sum(nps_promoters), sum(nps_detractors) "
                  "from marts.fct_touchpoint_daily where date_day = %s", (day,))
        return rows[0]


@pytest.fixture(scope="module")
def world(pg_server):
    name = "corr_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(pg_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin.close()
    wh = Warehouse(url=pg_server.url.replace("/cxloop_session?", f"/{name}?"),
                   pgdata=pg_server.pgdata)
    conn = wh.connect()
    migrate(conn)
    conn.close()
    root = Path(tempfile.mkdtemp(prefix="cxc-", dir="/tmp"))
    w = World(wh, root)
    tp = _touchpoint(w.settings())
    lo, hi = w.settings().domain.scales["responses.nps"]
    # 1. the first delivery: r1 a detractor six days back, r2/r3 on D, r9 out of scale.
    _write(w.landing, D, "responses.csv", [
        _response("r1", "c1", tp, EARLY, 10, lo + 2, "too slow"),
        _response("r2", "c2", tp, D, 9, hi - 1),
        _response("r3", "c3", tp, D, 11, hi - 2),
        _response("r9", "c9", tp, D, 12, hi + 5)])
    w.steps["first"] = w.ingest(D)
    w.facts["tasks_first"] = w.build_and_derive()
    w.facts["early_first"], w.facts["day_first"] = w.fact(EARLY), w.fact(D)
    # 2. the correction, same name: r1 gone, r2 now top score, r4 new.
    _write(w.landing, D, "responses.csv", [
        _response("r2", "c2", tp, D, 9, hi),
        _response("r3", "c3", tp, D, 11, hi - 2),
        _response("r4", "c4", tp, D, 13, hi)])
    w.steps["correction"] = w.ingest(D)
    w.facts["tasks_correction"] = w.build_and_derive()
    w.facts["early_after"], w.facts["day_after"] = w.fact(EARLY), w.fact(D)
    # 3. the same correction again.
    w.facts["changes_before_rerun"] = _q(wh, "select * from ops.batch_changes")
    w.facts["raw_before_rerun"] = _q(wh, "select response_id, nps, _batch_id from raw.responses "
                                     "order by 1")
    w.steps["rerun"] = w.ingest(D)
    yield w
    shutil.rmtree(root, ignore_errors=True)


def test_a_same_name_correction_removes_the_deleted_row_and_changes_the_changed_value(world):
    [first] = world.steps["first"]
    [corr] = world.steps["correction"]
    assert (first.status, first.rows_loaded, first.rows_quarantined) == ("loaded", 3, 1)
    assert corr.status == "loaded" and corr.batch_id != first.batch_id
    lo, hi = world.settings().domain.scales["responses.nps"]
    # raw holds only the correction's rows; staging serves them.
    assert _q(world.wh, "select response_id, nps, _batch_id = %s from raw.responses order by 1",
              (corr.batch_id,)) == [("r2", hi, True), ("r3", hi - 2, True), ("r4", hi, True)]
    assert _q(world.wh, "select response_id, nps from staging.stg_survey__responses "
              "order by 1") == [("r2", hi), ("r3", hi - 2), ("r4", hi)]
    # Tables rebuilt whole on every build follow by themselves...
    assert _q(world.wh, "select response_id from intermediate.int_responses_enriched "
              "order by 1") == [("r2",), ("r3",), ("r4",)]
    # ...and the incremental fact rebuilds the removed detractor's day (outside its
    # look-back) from ops.batch_changes; D is recounted.
    assert world.facts["early_first"] == (1, 0, 1)
    assert world.facts["early_after"] in ((0, 0, 0), (None, None, None))
    assert world.facts["day_first"] == (2, 1, 0)
    assert world.facts["day_after"] == (3, 2, 0)


def test_the_replaced_batch_is_kept_for_audit_and_named_as_superseded(world):
    [first] = world.steps["first"]
    [corr] = world.steps["correction"]
    assert _q(world.wh, "select batch_id, status, superseded_by from ops.load_batches "
              "order by started_at") == [(first.batch_id, "superseded", corr.batch_id),
                                         (corr.batch_id, "loaded", None)]
    kept = f"responses__{first.batch_id}"
    assert _q(world.wh, sql.SQL("select response_id from raw_superseded.{} order by 1").format(
        sql.Identifier(kept))) == [("r1",), ("r2",), ("r3",)]
    # Not a partition of raw any more; raw's partitions are the current batches only.
    assert _q(world.wh, "select c.relname from pg_inherits i join pg_class c "
              "on c.oid = i.inhrelid where i.inhparent = 'raw.responses'::regclass") == [
        (f"responses__{corr.batch_id}",)]


def test_the_change_is_counted_and_shown_in_the_run_summary(world):
    [first] = world.steps["first"]
    [corr] = world.steps["correction"]
    assert corr.change is not None
    assert (corr.change.rows_added, corr.change.rows_removed, corr.change.rows_changed) == (
        1, 1, 1)
    assert _q(world.wh, "select batch_id, replaces_batch_ids, rule, rows_added, rows_removed, "
              "rows_changed, first_affected_date from ops.batch_changes") == [
        (corr.batch_id, [first.batch_id], "same_name", 1, 1, 1, EARLY - timedelta(days=1))]
    s = report.RunSummary(run_id="r", flow="nightly", start_date=D, end_date=D,
                          batches=world.steps["correction"])
    md = report.markdown(s, {})
    assert f"replaces {first.batch_id[:12]}: 1 added, 1 removed, 1 changed" in md
    assert s.as_dict()["corrections"][0]["replaces"] == [first.batch_id]


def test_a_task_whose_evidence_vanished_is_cleared_not_deleted(world):
    assert world.facts["tasks_first"].created == 1
    assert world.facts["tasks_correction"].cleared == 1
    assert _q(world.wh, "select subject_id, condition_active, status "
              "from ops.improvement_tasks") == [("c1", False, "open")]
    assert _q(world.wh, "select event from ops.improvement_task_events order by event_id") == [
        ("created",), ("condition_cleared",)]


def test_the_replaced_batch_quarantined_rows_are_not_replayable(world):
    [first] = world.steps["first"]
    assert _q(world.wh, "select _batch_id from quarantine.responses") == [(first.batch_id,)]
    with pytest.raises(CxloopError, match="superseded"):
        replay.replay_quarantine(world.wh, GxRunner(world.settings().home,
                                                    world.wh.sqlalchemy_url()), first.batch_id)
    assert replay.batches_to_replay(world.wh, "responses") == []


def test_cli_names_the_replacing_batch_and_hides_the_replaced_quarantine(world, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    [first] = world.steps["first"]
    [corr] = world.steps["correction"]
    monkeypatch.setenv("CXLOOP_WAREHOUSE_URL", world.wh.url)
    monkeypatch.setenv("COLUMNS", "400")
    cfg = world.root / "cxloop-same_name.yml"
    runner = CliRunner()
    res = runner.invoke(app, ["batches", "--config", str(cfg), "--status", "superseded"])
    assert res.exit_code == 0, res.output
    assert first.batch_id in res.output and f"superseded by {corr.batch_id}" in res.output
    res = runner.invoke(app, ["quarantine", "show", "responses", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "reasons" in res.output and "c9" not in res.output  # r9 was in the replaced batch


def test_re_running_the_same_correction_changes_nothing(world):
    assert [r.status for r in world.steps["rerun"]] == ["skipped"]
    assert _q(world.wh, "select * from ops.batch_changes") == world.facts["changes_before_rerun"]
    assert _q(world.wh, "select response_id, nps, _batch_id from raw.responses order by 1") == \
        world.facts["raw_before_rerun"]
    assert _q(world.wh, "select count(*) from ops.load_batches") == [(2,)]


def test_newest_of_day_lets_a_new_file_name_replace_the_day(world):
    tp = _touchpoint(world.settings())
    lo, hi = world.settings().domain.scales["responses.nps"]
    day = D + timedelta(days=1)
    t0 = 1_780_000_000.0
    # Both files found in one run: the older loads first, the newer replaces it.
    _write(world.landing, day, "z_first.csv", [_response("r10", "c10", tp, day, 9, hi),
                                                _response("r11", "c11", tp, day, 10, hi)], t0)
    _write(world.landing, day, "a_fix.csv", [_response("r10", "c10", tp, day, 9, lo)], t0 + 60)
    results = world.ingest(day, "newest_of_day")
    by_name = {Path(r.source_file).name: r for r in results}
    fix, old = by_name["a_fix.csv"], by_name["z_first.csv"]
    assert fix.change is not None and fix.change.replaces == [old.batch_id]
    assert (fix.change.rows_added, fix.change.rows_removed, fix.change.rows_changed) == (0, 1, 1)
    assert _q(world.wh, "select response_id, nps from raw.responses where _extract_date = %s",
              (day,)) == [("r10", lo)]
    assert _q(world.wh, "select status, superseded_by from ops.load_batches where batch_id = %s",
              (old.batch_id,)) == [("superseded", fix.batch_id)]
    # Again: both known, nothing moves.
    assert [r.status for r in world.ingest(day, "newest_of_day")] == ["skipped", "skipped"]


def test_under_same_name_a_new_file_name_is_one_more_file_of_the_day(world):
    tp = _touchpoint(world.settings())
    lo, hi = world.settings().domain.scales["responses.nps"]
    day = D + timedelta(days=2)
    _write(world.landing, day, "part1.csv", [_response("r20", "c20", tp, day, 9, hi)])
    world.ingest(day)
    _write(world.landing, day, "part2.csv", [_response("r21", "c21", tp, day, 9, lo)])
    [_, second] = world.ingest(day)
    assert second.status == "loaded" and second.change is None
    assert _q(world.wh, "select response_id from raw.responses where _extract_date = %s "
              "order by 1", (day,)) == [("r20",), ("r21",)]


def test_a_batch_labelled_superseded_before_this_change_is_set_aside_on_migrate(world):
    """Warehouses from before: a correction only relabelled the old batch, whose rows
    stayed in raw. The migration takes them out (and is a no-op the second time)."""
    tp = _touchpoint(world.settings())
    lo, hi = world.settings().domain.scales["responses.nps"]
    day = D + timedelta(days=3)
    _write(world.landing, day, "old.csv", [_response("r30", "c30", tp, day, 9, hi)])
    [old] = world.ingest(day)
    with world.wh.transaction() as cur:
        cur.execute("update ops.load_batches set status = 'superseded' where batch_id = %s",
                    (old.batch_id,))
    for _ in range(2):
        conn = world.wh.connect()
        migrate(conn)
        conn.close()
    assert _q(world.wh, "select count(*) from raw.responses where _batch_id = %s",
              (old.batch_id,)) == [(0,)]
    assert _q(world.wh, sql.SQL("select response_id from raw_superseded.{}").format(
        sql.Identifier(f"responses__{old.batch_id}"))) == [("r30",)]


def test_a_correction_taken_back_reinstates_the_replaced_delivery(world):
    """Same name: the file holds the first delivery's bytes again, so that batch is the
    day's delivery again (not skipped as known), and it replaces the correction."""
    tp = _touchpoint(world.settings())
    lo, hi = world.settings().domain.scales["responses.nps"]
    day = D + timedelta(days=4)
    v1 = [_response("r40", "c40", tp, day, 9, hi), _response("r41", "c41", tp, day, 10, lo)]
    _write(world.landing, day, "responses.csv", v1)
    [first] = world.ingest(day)
    _write(world.landing, day, "responses.csv", v1[:1])
    [corr] = world.ingest(day)
    assert corr.change is not None and corr.change.rows_removed == 1
    _write(world.landing, day, "responses.csv", v1)  # taken back: the same bytes as at first
    [back] = world.ingest(day)
    assert back.batch_id == first.batch_id and back.status == "loaded"
    assert back.change is not None and back.change.reinstated
    assert back.change.replaces == [corr.batch_id]
    assert (back.change.rows_added, back.change.rows_removed, back.change.rows_changed) == (
        1, 0, 0)
    assert _q(world.wh, "select response_id, _batch_id = %s from raw.responses "
              "where _extract_date = %s order by 1", (first.batch_id, day)) == [
        ("r40", True), ("r41", True)]
    assert _q(world.wh, "select batch_id, status, superseded_by from ops.load_batches "
              "where extract_date = %s order by started_at", (day,)) == [
        (first.batch_id, "loaded", None), (corr.batch_id, "superseded", first.batch_id)]
    assert [r.status for r in world.ingest(day)] == ["skipped"]  # and that is idempotent
    assert _q(world.wh, "select count(*) from ops.batch_changes where extract_date = %s",
              (day,)) == [(2,)]
