"""Closing the loop, measured: a resolved task's recovery-survey answer is its effect.

The real path on a fresh warehouse (conftest ``warehouse``): cxloop writes the recovery
invitations (flows/outbound.py), the survey tool's answers come back as a responses file
carrying the invitation ids, load and GX take it like any other delivery, dbt builds
``int_task_recovery_answers`` (and runs its unit test), and the nightly digest, received
by a real SMTP server on 127.0.0.1, lists the task under "Closed with effect". No demo
backfill: a handful of rows, so the test costs seconds.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flows import alerts, load, notify, outbound, transform
from flows.config import REPO_ROOT, load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner
from tests.notify_servers import SmtpServer

pytestmark = pytest.mark.integration

D = date(2026, 9, 10)  # the night the tasks were resolved and the invitations written
ANSWERED = D + timedelta(days=2)  # the survey tool's delivery of the answers
TOUCHPOINT = next(csv.DictReader(open(REPO_ROOT / "dbt_project/seeds/touchpoint_catalogue.csv",
                                      encoding="utf-8")))["touchpoint_code"]


def _task(cur, task_id: str, customer: str, nps: int, csat: int) -> None:
    evidence = {"nps": nps, "csat": csat, "touchpoint_code": TOUCHPOINT,
                "marketing_consent": True}
    cur.execute(
        """insert into ops.improvement_tasks (task_id, natural_key, rule, subject_type,
               subject_id, period, title, evidence, owner_team, owner_person, priority, due_at,
               status, is_contact, created_at, closed_at, created_run_id, confirmed_run_id)
           values (%s, %s, 'call_back', 'customer', %s, %s, %s, %s, 'team_a', 'person_a', 1,
                   %s, 'resolved', true, %s, %s, 'r0', 'r0')""",
        (task_id, f"call_back|{customer}|{D}", customer, D.isoformat(), f"call back {customer}",
         json.dumps(evidence), datetime(2026, 9, 8), datetime(2026, 9, 6), datetime(2026, 9, 9)))


def _responses(landing: Path, rows: list[dict[str, object]]) -> None:
    e = ENTITIES["responses"]
    folder = landing / e.source / "responses" / ANSWERED.isoformat()
    folder.mkdir(parents=True)
    with open(folder / "responses.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=e.column_names)
        w.writeheader()
        for r in rows:
            w.writerow({"survey_type": "transactional", "touchpoint_code": TOUCHPOINT,
                        "invited_at": f"{D} 09:00:00", **r})


def _settings(tmp_path: Path, smtp: SmtpServer):
    """Settings whose one owner, team_a, is e-mailed through the test's SMTP server."""
    contacts = tmp_path / "owner_contacts.csv"
    contacts.write_text("owner,channel,address\nteam_a,email,team_a@test.example\n")
    config = tmp_path / "cxloop.yml"
    config.write_text(yaml.safe_dump({
        "home": str(tmp_path), "landing": str(tmp_path / "landing"),
        "reference": {"owner_contacts": str(contacts)},
        "alerts": {"smtp": {"host": "127.0.0.1", "port": smtp.port,
                            "from": "cxloop@test.example"},
                   "outbound": str(tmp_path / "outbound"), "retry_delay_seconds": 0.05}}))
    return load_settings(config)


def test_the_recovery_answer_is_the_tasks_effect_and_reaches_the_digest(warehouse, tmp_path):
    smtp = SmtpServer()
    try:
        settings = _settings(tmp_path, smtp)
        with warehouse.transaction() as cur:
            _task(cur, "T-answered", "cust-1", nps=2, csat=1)
            _task(cur, "T-silent", "cust-2", nps=4, csat=2)

        stats = outbound.write_recovery_invitations(warehouse, settings, D, "night-1")
        assert (stats.invited, stats.not_invited) == (2, 0)
        invitation = {r["task_id"]: r["invitation_id"]
                      for r in csv.DictReader(open(stats.file, encoding="utf-8"))}

        # the survey tool delivers: the recovery answer (and a second, later one that must
        # not count), plus answers of the same customers to other invitations
        _responses(tmp_path / "landing", [
            {"response_id": "R-recovery", "invitation_id": invitation["T-answered"],
             "customer_id": "cust-1", "responded_at": f"{D + timedelta(days=1)} 10:00:00",
             "nps": 9, "csat": 5},
            {"response_id": "R-recovery-again", "invitation_id": invitation["T-answered"],
             "customer_id": "cust-1", "responded_at": f"{ANSWERED} 10:00:00", "nps": 1, "csat": 1},
            {"response_id": "R-other-1", "invitation_id": "V-other-1", "customer_id": "cust-1",
             "responded_at": f"{D + timedelta(days=1)} 08:00:00", "nps": 0, "csat": 1},
            {"response_id": "R-other-2", "invitation_id": "V-other-2", "customer_id": "cust-2",
             "responded_at": f"{D + timedelta(days=1)} 08:00:00", "nps": 10, "csat": 5},
        ])
        load.refresh_reference(warehouse, settings)
        [batch] = list(find_batches(settings, [ANSWERED]))
        [loaded] = load.ingest_entity(warehouse, GxRunner(tmp_path, warehouse.sqlalchemy_url()),
                                      "responses", [batch], "answers")
        assert loaded.status == "loaded" and loaded.rows_loaded == 4
        outcome = transform.run_dbt(
            warehouse, settings, ["build", "--select", "+int_task_recovery_answers",
                                  "--indirect-selection", "cautious"], ANSWERED)
        assert outcome.success, outcome.failures
        assert outcome.counts.get("pass", 0) >= 3  # the unit test and the model's data tests
        with warehouse.transaction() as cur:
            cur.execute("select task_id, response_id, recovery_nps, recovery_csat "
                        "from intermediate.int_task_recovery_answers")
            assert cur.fetchall() == [("T-answered", "R-recovery", 9, 5)]

        effects = {t["task_id"]: t for t in outbound.closed_effects(warehouse)}
        assert effects["T-answered"]["effect_source"] == "recovery_survey"
        assert effects["T-silent"]["effect_source"] == "awaiting_recovery_answer"

        n = notify.Notifier(warehouse, settings, "night-3")
        try:
            assert alerts.send_digests(n, warehouse, ANSWERED) == 1
        finally:
            n.close()
        [(rcpt, subject, body)] = smtp.inbox.messages
        assert rcpt == ["team_a@test.example"] and subject.endswith("2 closed")
        section = body[body.index("Closed with effect (2):"):]
        answered = next(line for line in section.splitlines() if "T-answered" in line)
        assert answered.endswith("NPS 2 -> 9, CSAT 1 -> 5 (recovery survey)")
        assert "T-silent" in section and "no recovery answer yet" in section

        # the next night: nothing new to tell about closed tasks, so no digest at all
        n = notify.Notifier(warehouse, settings, "night-4")
        try:
            assert alerts.send_digests(n, warehouse, ANSWERED + timedelta(days=1)) == 0
        finally:
            n.close()
        assert len(smtp.inbox.messages) == 1
    finally:
        smtp.stop()


def test_a_long_digest_lists_the_most_urgent_and_counts_the_rest(warehouse, tmp_path):
    """An owner with more open tasks than a section lists (LIST_LIMIT) gets the most urgent
    ones, a count of the rest, and all of them on record as told: the digest reads the
    tasks a batch at a time (a 1M-customer warehouse has 443k open ones), not all at once."""
    from flows import task_messages

    smtp = SmtpServer()
    try:
        settings = _settings(tmp_path, smtp)
        n_tasks = task_messages.LIST_LIMIT + 7
        with warehouse.transaction() as cur:
            for i in range(n_tasks):
                # priorities 1-3 interleaved: the listed ones are the 25 most urgent
                cur.execute(
                    """insert into ops.improvement_tasks (task_id, natural_key, rule,
                           subject_type, subject_id, period, title, evidence, owner_team,
                           owner_person, priority, due_at, status, is_contact, created_at,
                           created_run_id, confirmed_run_id)
                       values (%s, %s, 'call_back', 'customer', %s, %s, %s, '{}', 'team_a',
                               'person_a', %s, %s, 'open', true, %s, 'r0', 'r0')""",
                    (f"T-{i:03d}", f"call_back|c{i}|{D}", f"c{i}", D.isoformat(), f"task {i}",
                     1 + i % 3, datetime(2026, 12, 1), datetime(2026, 9, 8)))
        got = list(task_messages._iter_tasks(warehouse, "owner_team = %(t)s", {"t": "team_a"},
                                             batch_rows=4))
        assert [t["task_id"] for t in got] == sorted(
            (f"T-{i:03d}" for i in range(n_tasks)), key=lambda k: (1 + int(k[2:]) % 3, k))
        n = notify.Notifier(warehouse, settings, "night-1")
        try:
            assert alerts.send_digests(n, warehouse, D) == 1
        finally:
            n.close()
        [(_, subject, body)] = smtp.inbox.messages
        assert subject.startswith(f"[cxloop] {n_tasks} new,")
        listed = [line.split()[1] for line in body[body.index(f"New ({n_tasks}):"):].splitlines()
                  if line.startswith("- T-")]
        assert listed == [t["task_id"] for t in got][:task_messages.LIST_LIMIT]
        assert f"- ... and {n_tasks - task_messages.LIST_LIMIT} more" in body
        with warehouse.transaction() as cur:
            cur.execute("select task_ids from ops.notifications where kind = 'digest'")
            [(told,)] = cur.fetchall()
        assert sorted(told) == sorted(f"T-{i:03d}" for i in range(n_tasks))
    finally:
        smtp.stop()
