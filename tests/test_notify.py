"""Owner notifications against real receivers: aiosmtpd and an HTTP webhook on 127.0.0.1.

Each test gets a fresh migrated warehouse (ops.notifications) and sends through
flows/notify.py, with no pipeline run: contacts, retries, dedupe, caps and bad input.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows import notify
from flows.config import AlertSettings, Settings
from flows.config import Reference as _Reference
from flows.config_sections import SmtpSettings
from tests.notify_servers import SmtpServer, WebhookServer, free_port

# Needs only the embedded PostgreSQL (the `warehouse` fixture), not a Prefect server.

NOW = datetime(2026, 11, 30, 10, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def smtp():
    s = SmtpServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hook():
    h = WebhookServer()
    yield h
    h.stop()


def _settings(tmp_path: Path, rows: list[tuple[str, str, str]], smtp_port: int | None,
              **alerts) -> Settings:
    path = tmp_path / "owner_contacts.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["owner", "channel", "address"])
        w.writerows(rows)
    smtp_cfg = SmtpSettings(host="127.0.0.1", port=smtp_port, timeout_seconds=3,
                            **{"from": "cxloop@test.example"}) if smtp_port else SmtpSettings()
    return Settings(reference=_Reference(owner_contacts=path),
                    alerts=AlertSettings(smtp=smtp_cfg, retry_delay_seconds=0.05, **alerts))


def _msg(key: str = "alert|T1", owner: str = "ana", kind: str = "immediate") -> notify.Message:
    return notify.Message(key, kind, owner, "[cxloop] Call back C1", "Task T1: call back", ["T1"])


def _rows(wh) -> list[dict]:
    with wh.transaction() as cur:
        cur.execute("select * from ops.notifications order by owner, channel, notification_id")
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_one_message_per_contact_and_a_resend_sends_nothing(warehouse, tmp_path, smtp, hook):
    s = _settings(tmp_path, [("ana", "email", "ana@test.example"),
                             ("ana", "webhook", hook.url("/ana"))], smtp.port)
    for _ in range(2):  # the same message twice: the second finds both rows sent
        n = notify.Notifier(warehouse, s, "r1", now=NOW)
        n.send(_msg(), n.contacts.of("ana"))
    assert [m[0] for m in smtp.inbox.to("ana@test.example")] == ["[cxloop] Call back C1"]
    assert [p["title"] for p in hook.at("/ana")] == ["[cxloop] Call back C1"]
    assert "Task T1" in hook.at("/ana")[0]["message"]
    rows = _rows(warehouse)
    assert [(r["channel"], r["status"], r["attempt"], r["task_id"]) for r in rows] == [
        ("email", "sent", 1, "T1"), ("webhook", "sent", 1, "T1")]
    assert rows[1]["recipient"] == f"http://127.0.0.1:{hook.port}/***"  # no secret path kept


def test_webhook_is_retried_after_two_500s(warehouse, tmp_path, hook):
    s = _settings(tmp_path, [("omar", "webhook", hook.url("/flaky"))], None, retries=2)
    hook.fail_next["/flaky"] = 2
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    n.send(_msg(owner="omar"), n.contacts.of("omar"))
    assert hook.attempts.count("/flaky") == 3
    assert len(hook.at("/flaky")) == 1
    (row,) = _rows(warehouse)
    assert (row["status"], row["attempt"], row["error"]) == ("sent", 3, None)


def test_a_receiver_that_keeps_failing_is_recorded_and_retried_on_the_next_send(
        warehouse, tmp_path, hook):
    s = _settings(tmp_path, [("omar", "webhook", hook.url("/down"))], None, retries=1)
    hook.fail_next["/down"] = 3
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    n.send(_msg(owner="omar"), n.contacts.of("omar"))
    (row,) = _rows(warehouse)
    assert row["status"] == "failed" and row["attempt"] == 2 and "500" in row["error"]
    assert n.stats.failed == 1 and "failed after 2 attempt(s)" in n.stats.lines()[0]
    n2 = notify.Notifier(warehouse, s, "r2", now=NOW)  # next run: fails once more, then sent
    n2.send(_msg(owner="omar"), n2.contacts.of("omar"))
    (row,) = _rows(warehouse)
    assert (row["status"], row["attempt"]) == ("sent", 4)
    assert len(hook.at("/down")) == 1


def test_bad_channels_each_give_a_line_and_a_row_and_never_raise(warehouse, tmp_path, hook):
    refused = free_port()  # nothing listens there
    s = _settings(tmp_path, [
        ("ana", "pager", "555-0100"),                 # unknown channel type
        ("ana", "email", "ana-at-example"),           # malformed address
        ("ana", "webhook", "htp:/broken"),            # malformed URL
        ("ana", "email", "ana@test.example"),         # SMTP server refuses
        ("ana", "webhook", hook.url("/ok")),          # still delivered
    ], refused, retries=1)
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    n.send(_msg(), n.contacts.of("ana"))
    n.send(_msg(key="alert|T2", owner="nobody"), n.contacts.of("nobody"))  # owner with no contact
    by = {(r["channel"], r["status"]) for r in _rows(warehouse)}
    assert by == {("pager", "invalid"), ("email", "invalid"), ("webhook", "invalid"),
                  ("email", "failed"), ("webhook", "sent"), (None, "no_contact")}
    text = "\n".join(n.stats.lines())
    assert "unknown channel 'pager'" in text
    assert "'ana-at-example' is not an e-mail address" in text
    assert "'htp:/broken' is not an http(s) URL" in text
    assert "email to ana@test.example failed after 2 attempt(s)" in text
    assert "no contact for owner nobody in owner_contacts.csv" in text
    assert len(hook.at("/ok")) == 1


def test_email_without_smtp_host_or_password_is_not_sent_with_the_reason(
        warehouse, tmp_path, monkeypatch):
    s = _settings(tmp_path, [("ana", "email", "ana@test.example")], None)
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    n.send(_msg(), n.contacts.of("ana"))
    assert "alerts.smtp.host is not set" in n.stats.lines()[0]
    s2 = _settings(tmp_path, [("bo", "email", "bo@test.example")], free_port())
    s2.alerts.smtp.password_env = "CXLOOP_TEST_SMTP_PASSWORD"
    monkeypatch.delenv("CXLOOP_TEST_SMTP_PASSWORD", raising=False)
    n2 = notify.Notifier(warehouse, s2, "r1", now=NOW)
    n2.send(_msg(owner="bo"), n2.contacts.of("bo"))
    assert "CXLOOP_TEST_SMTP_PASSWORD (alerts.smtp.password_env) is not set" in n2.stats.lines()[0]


def test_the_hourly_cap_and_quiet_hours_defer_immediate_alerts(warehouse, tmp_path, hook):
    s = _settings(tmp_path, [("ana", "webhook", hook.url("/cap"))], None,
                  max_immediate_per_owner_per_hour=2)
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    for i in range(4):
        n.send(_msg(key=f"alert|C{i}"), n.contacts.of("ana"))
    assert len(hook.at("/cap")) == 2 and n.stats.deferred == 2
    statuses = sorted(r["status"] for r in _rows(warehouse))
    assert statuses == ["deferred", "deferred", "sent", "sent"]
    quiet = _settings(tmp_path, [("li", "webhook", hook.url("/quiet"))], None,
                      quiet_hours=("22:00", "07:00"))
    n = notify.Notifier(warehouse, quiet, "r2", now=datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    n.send(_msg(key="alert|Q", owner="li"), n.contacts.of("li"))
    assert hook.at("/quiet") == [] and n.stats.deferred == 1
    n = notify.Notifier(warehouse, quiet, "r3", now=datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    n.send(_msg(key="digest|2026-11-30", owner="li", kind="digest"), n.contacts.of("li"))
    assert len(hook.at("/quiet")) == 1  # a digest is not held back by quiet hours


def test_messages_carry_no_personal_data():
    ev = {"nps": 3, "customer_email": "x@y.org", "phone": "+44 20 7946 0958",
          "touchpoint": "billing", "note": "reach me at x@y.org", "contact_name": "Ann",
          "top_drivers": [{"f": 1}]}
    assert notify.scrub(ev) == {"nps": 3, "touchpoint": "billing"}
    task = {"task_id": "T9", "rule": "r", "title": "Call back C9", "owner_person": "ana",
            "owner_team": "t", "priority": 1, "due_at": NOW, "evidence": ev}
    text = notify.task_text(task, "https://tickets.test/{task_id}")
    assert "x@y.org" not in text and "7946" not in text and "Ann" not in text
    assert "T9" in text and "Due: 2026-11-30" in text and "https://tickets.test/T9" in text


def test_contacts_file_problems_are_configuration_errors(tmp_path):
    from flows.errors import ConfigError

    with pytest.raises(ConfigError, match="no such owner contacts file"):
        notify.load_contacts(tmp_path / "missing.csv")
    bad = tmp_path / "c.csv"
    bad.write_text("who,how\nana,email\n")
    with pytest.raises(ConfigError, match="missing column"):
        notify.load_contacts(bad)


def test_alerts_configuration_errors_name_the_key(tmp_path):
    from flows.config import load_settings
    from flows.errors import ConfigError

    cases = [({"schedule": "99 * * *"}, "alerts.schedule"),
             ({"quiet_hours": ["22:00", "7 am"]}, "alerts.quiet_hours"),
             ({"entities": ["response"]}, "alerts.entities"),
             ({"smtp": {"hots": "x"}}, "alerts.smtp.hots")]
    for alerts, key in cases:
        path = tmp_path / "cxloop.yml"
        path.write_text(__import__("yaml").safe_dump({"alerts": alerts}))
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(path)
    path.write_text("alerts: {outbound: out, smtp: {from: a@b.example, password_env: X}}\n")
    s = load_settings(path)
    assert s.alerts.outbound == str(tmp_path / "out") and s.alerts.smtp.from_addr == "a@b.example"


def _insert_task(wh, tid: str, **cols) -> None:
    row = {"task_id": tid, "natural_key": f"r|{tid}|p", "rule": "r", "subject_type": "customer",
           "subject_id": f"C-{tid}", "period": "p", "title": f"Call back C-{tid}",
           "evidence": "{}", "owner_team": "desk", "owner_person": "ana", "priority": 1,
           "due_at": NOW, "status": "open", "created_run_id": "x", "confirmed_run_id": "x", **cols}
    with wh.transaction() as cur:
        cur.execute(f"insert into ops.improvement_tasks ({', '.join(row)}) "
                    f"values ({', '.join(['%s'] * len(row))})", list(row.values()))


def test_the_escalation_owner_hears_of_each_breach_once(warehouse, tmp_path, hook):
    from datetime import timedelta

    from flows import alerts

    s = _settings(tmp_path, [("head.desk", "webhook", hook.url("/head"))], None)
    _insert_task(warehouse, "T1", escalated_to="head.desk", escalated_due_at=NOW,
                 escalation_level=1)
    _insert_task(warehouse, "T2", status="suppressed", escalated_to="head.desk",
                 escalated_due_at=NOW)  # not open: nobody is chased about it
    _insert_task(warehouse, "T3", escalated_to="head.desk",  # the key keeps microseconds
                 escalated_due_at=NOW + timedelta(microseconds=123456), escalation_level=1)
    for run in ("r1", "r2"):
        alerts.notify_escalations(notify.Notifier(warehouse, s, run, now=NOW), warehouse, None)
    assert sorted(p["title"] for p in hook.at("/head")) == [
        "[cxloop] escalated: Call back C-T1", "[cxloop] escalated: Call back C-T3"]
    later = NOW + timedelta(days=3)  # the due date moved and was missed again: a new breach
    with warehouse.transaction() as cur:
        cur.execute("update ops.improvement_tasks set due_at = %s, escalated_due_at = %s "
                    "where task_id = 'T1'", (later, later))
    alerts.notify_escalations(notify.Notifier(warehouse, s, "r3", now=NOW), warehouse, None)
    assert len(hook.at("/head")) == 3


def test_recovery_invitations_respect_consent_and_the_cap_and_are_written_once(
        warehouse, tmp_path):
    import json

    from flows import outbound

    yes, no = json.dumps({"marketing_consent": True, "touchpoint": "billing"}), \
        json.dumps({"marketing_consent": False})
    _insert_task(warehouse, "A", subject_id="C1", status="resolved", is_contact=True, evidence=yes)
    _insert_task(warehouse, "B", subject_id="C1", is_contact=True, evidence=yes)  # 2nd contact
    _insert_task(warehouse, "C", subject_id="C2", status="done", is_contact=True, evidence=yes)
    _insert_task(warehouse, "D", subject_id="C3", status="resolved", is_contact=True, evidence=no)
    _insert_task(warehouse, "E", subject_id="C4", status="resolved", evidence=yes)  # no contact
    s = Settings(alerts=AlertSettings(outbound=str(tmp_path / "out")))
    today = datetime.now(UTC).date()
    first = outbound.write_recovery_invitations(warehouse, s, today, "r1")
    second = outbound.write_recovery_invitations(warehouse, s, today, "r2")
    assert (first.invited, first.not_invited, second.invited, second.not_invited) == (1, 2, 0, 0)
    path = tmp_path / "out" / "survey" / "invitations" / today.isoformat() / "invitations.csv"
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert [(r["customer_id"], r["task_id"], r["touchpoint_code"], r["reason"]) for r in rows] == [
        ("C2", "C", "billing", "recovery")]
    assert list(rows[0]) == list(outbound.INVITATION_COLUMNS)
    with warehouse.transaction() as cur:
        cur.execute("select task_id, status, reason from ops.recovery_invitations order by 1")
        got = cur.fetchall()
    assert [(t, st) for t, st, _ in got] == [("A", "not_invited"), ("C", "invited"),
                                             ("D", "not_invited")]
    assert got[0][2].startswith("contact cap: 2 contact(s)") and got[2][2] == "no consent to contact"


def test_cxloop_alerts_exits_2_on_a_bad_alerts_key_before_loading(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "cxloop.yml"
    cfg.write_text("home: h\nalerts: {max_immediate_per_owner_per_hour: -1}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    res = subprocess.run([sys.executable, "-m", "flows", "alerts", "--config", str(cfg)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "alerts.max_immediate_per_owner_per_hour" in res.stderr
    assert not (tmp_path / "h" / "pgdata").exists()  # nothing was started or loaded


def test_a_webhook_keeps_its_own_query_parameters(warehouse, tmp_path, hook):
    s = _settings(tmp_path, [("ana", "webhook", hook.url("/q?token=s3cret"))], None)
    n = notify.Notifier(warehouse, s, "r1", now=NOW)
    n.send(_msg(), n.contacts.of("ana"))
    assert len(hook.at("/q?token=s3cret")) == 1
    (row,) = _rows(warehouse)
    assert "s3cret" not in row["recipient"]
