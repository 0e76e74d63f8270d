"""Notify owners where they work: e-mail, chat and generic webhooks through apprise.

Every message, sent or not, is a row of ``ops.notifications`` whose id is a hash of what
the message is about (an alert on a task, one breach of its due date, one night's
digest) and where it goes, so a re-run of the same hour or night finds the row and sends
nothing twice; a row that failed is tried again when the same message comes up again.
A channel that fails never fails the run: the problem becomes one line of the run's
summary and the row's ``error``. Messages name the task, why (its evidence without
anything that could reach or identify the customer beyond their id) and the due date.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

from flows.config import Settings
from flows.config_sections import AlertSettings, SmtpSettings
from flows.errors import ConfigError
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

CHANNELS = ("email", "webhook", "slack", "teams", "apprise")
# Statuses after which the same message is never sent again.
FINAL = ("sent", "invalid", "no_contact", "suppressed", "deferred", "skipped")
Kind = Literal["immediate", "digest"]

# Evidence keys that could carry personal data (split on "_"): never in a message.
PRIVATE_TOKENS = {"email", "phone", "mobile", "name", "address", "comment", "ip", "birth"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


@dataclass(frozen=True)
class Contact:
    owner: str
    channel: str
    address: str
    line: int


@dataclass
class Contacts:
    """``owner_contacts.csv`` by owner; bad rows stay in, so each message they would
    carry gets its own row and reason in ``ops.notifications``."""

    path: Path
    by_owner: dict[str, list[Contact]] = field(default_factory=dict)

    def of(self, *owners: str | None) -> list[Contact]:
        seen: list[Contact] = []
        for o in owners:
            for c in self.by_owner.get(o or "", []):
                if c not in seen:
                    seen.append(c)
        return seen


def load_contacts(path: Path) -> Contacts:
    """Read the contacts file; a missing file or wrong header is a configuration error."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"owner", "channel", "address"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                  "(expected owner,channel,address)")
            rows = [(i, r) for i, r in enumerate(reader, start=2)]
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such owner contacts file (cxloop.yml: "
                          "reference.owner_contacts)") from None
    out = Contacts(path)
    for line, r in rows:
        owner = (r.get("owner") or "").strip()
        if not owner:
            continue
        c = Contact(owner, (r.get("channel") or "").strip().lower(),
                    (r.get("address") or "").strip(), line)
        out.by_owner.setdefault(owner, []).append(c)
    return out


class InvalidChannel(ValueError):
    """A contact that can never receive a message as written (fix the contacts file)."""


def apprise_url(c: Contact, smtp: SmtpSettings) -> str:
    """The apprise URL for a contact, or InvalidChannel saying what to fix."""
    where = f"line {c.line} ({c.owner}, {c.channel})"
    if c.channel not in CHANNELS:
        raise InvalidChannel(f"{where}: unknown channel {c.channel!r} (known: {', '.join(CHANNELS)})")
    if not c.address:
        raise InvalidChannel(f"{where}: no address")
    if c.channel == "email":
        if not _EMAIL.fullmatch(c.address):
            raise InvalidChannel(f"{where}: {c.address!r} is not an e-mail address")
        if not smtp.host:  # one line for every e-mail contact, not one per contact
            raise InvalidChannel("email: alerts.smtp.host is not set in cxloop.yml; "
                                 "e-mails not sent")
        auth = ""
        user = os.environ.get(smtp.username_env or "", "") if smtp.username_env else ""
        password = os.environ.get(smtp.password_env or "", "") if smtp.password_env else ""
        if smtp.password_env and not password:
            raise InvalidChannel(f"email: environment variable {smtp.password_env} "
                                 "(alerts.smtp.password_env) is not set; e-mails not sent")
        if user:
            auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
        scheme = "mailto" if smtp.secure == "insecure" else "mailtos"
        mode = {"insecure": "", "starttls": "&mode=starttls", "ssl": "&mode=ssl"}[smtp.secure]
        return (f"{scheme}://{auth}{smtp.host}:{smtp.port}?to={quote(c.address)}"
                f"&from={quote(smtp.from_addr)}&format=text{mode}")
    parts = urlsplit(c.address)
    if c.channel == "webhook":
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidChannel(f"{where}: {c.address!r} is not an http(s) URL")
        # apprise keeps a query parameter of the receiver's own only when prefixed with "-"
        own = [f"-{quote(k, safe='')}={quote(v, safe='')}"
               for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        base = parts._replace(scheme="jsons" if parts.scheme == "https" else "json", query="",
                              fragment="").geturl()
        return base + "?" + "&".join(["format=text", *own])
    if not parts.scheme or not (parts.netloc or parts.path):
        raise InvalidChannel(f"{where}: {c.address!r} is not a URL")
    return c.address  # slack / teams webhooks and apprise URLs: apprise reads them natively


def masked(c: Contact) -> str:
    """The recipient as recorded: an e-mail address, or a URL without its secret path."""
    if c.channel == "email" or "://" not in c.address:
        return c.address
    p = urlsplit(c.address)
    return f"{p.scheme}://{p.hostname or ''}{f':{p.port}' if p.port else ''}/***"


def deliver(url: str, title: str, body: str, retries: int, delay: float,
            timeout: float = 15.0) -> tuple[bool, int, str | None]:
    """Send one message through apprise: (sent, attempts, last error)."""
    import apprise

    error: str | None = None
    attempt = 0
    for attempt in range(1, retries + 2):
        obj = apprise.Apprise.instantiate(url)
        if obj is None:
            return False, attempt, "apprise does not accept this address/URL"
        if hasattr(obj, "socket_connect_timeout"):
            obj.socket_connect_timeout = timeout
        with apprise.LogCapture(level=logging.WARNING) as out:
            ok = obj.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        if ok:
            return True, attempt, None
        error = (out.getvalue().strip().splitlines() or ["delivery failed"])[-1]
        error = re.sub(r"^\S+ \S+ - \w+ - ", "", error)  # drop the log's time and level
        if attempt <= retries:
            time.sleep(delay * attempt)
    return False, attempt, error


def notification_id(key: str, owner: str, c: Contact | None) -> str:
    where = f"{c.channel}|{c.address}" if c else "-"
    return "N" + hashlib.sha256(f"{key}|{owner}|{where}".encode()).hexdigest()[:19]


def scrub(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence fit for a message: no field that could hold personal data."""
    out = {}
    for k, v in evidence.items():
        if set(str(k).lower().split("_")) & PRIVATE_TOKENS:
            continue
        if isinstance(v, str) and (_EMAIL.search(v) or _PHONE.fullmatch(v.strip())):
            continue
        if isinstance(v, dict | list):
            continue  # nested blobs (driver lists) are for the warehouse, not a chat line
        out[k] = v
    return out


def in_quiet_hours(cfg: AlertSettings, now: datetime, tz: str) -> bool:
    if not cfg.quiet_hours:
        return False
    start, end = (dtime.fromisoformat(t) for t in cfg.quiet_hours)
    t = now.astimezone(ZoneInfo(tz)).time()
    return start <= t < end if start <= end else (t >= start or t < end)


@dataclass
class Message:
    key: str  # what the message is about: "alert|T..", "escalation|T..|due", "digest|date"
    kind: Kind
    owner: str
    title: str
    body: str
    task_ids: list[str]


@dataclass
class NotifyStats:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    not_sent: int = 0
    problems: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        return [f"notifications: {p}" + (f" ({n} messages)" if n > 1 else "")
                for p, n in sorted(self.problems.items())]


class Notifier:
    """Sends messages to contacts and records each in ``ops.notifications``."""

    def __init__(self, wh: Warehouse, settings: Settings, run_id: str,
                 now: datetime | None = None):
        from datetime import UTC

        self.wh, self.cfg, self.tz, self.run_id = wh, settings.alerts, settings.timezone, run_id
        self.contacts = load_contacts(settings.reference.owner_contacts)
        self.now = now or datetime.now(UTC)
        self.stats = NotifyStats()
        self._conn: Any = None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """One autocommit connection for the notifier's life: each row is on record as soon
        as its message went out, without a connection per statement (1,000 alerts)."""
        if self._conn is None or self._conn.closed:
            self._conn = self.wh.connect(autocommit=True)
        with self._conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _existing(self, nid: str) -> str | None:
        with self._cursor() as cur:
            cur.execute("select status from ops.notifications where notification_id = %s", (nid,))
            row = cur.fetchone()
        return row[0] if row else None

    def _record(self, nid: str, msg: Message, c: Contact | None, status: str,
                error: str | None, attempts: int) -> None:
        task = msg.task_ids[0] if msg.kind == "immediate" and msg.task_ids else None
        with self._cursor() as cur:
            cur.execute(
                """insert into ops.notifications (notification_id, message_key, task_id, task_ids,
                     kind, owner, channel, recipient, sent_at, status, error, attempt, run_id)
                   values (%(id)s, %(key)s, %(task)s, %(tasks)s, %(kind)s, %(owner)s, %(ch)s,
                     %(to)s, %(sent)s, %(status)s, %(error)s, %(att)s, %(run)s)
                   on conflict (notification_id) do update set status = excluded.status,
                     error = excluded.error, sent_at = excluded.sent_at, run_id = excluded.run_id,
                     attempt = ops.notifications.attempt + excluded.attempt, updated_at = now()""",
                {"id": nid, "key": msg.key, "task": task, "tasks": msg.task_ids, "kind": msg.kind,
                 "owner": msg.owner, "ch": c.channel if c else None, "to": masked(c) if c else None,
                 "sent": self.now if status == "sent" else None, "status": status,
                 "error": error, "att": attempts, "run": self.run_id})

    def _sent_last_hour(self, owner: str) -> int:
        with self._cursor() as cur:
            cur.execute("select count(distinct message_key) from ops.notifications "
                        "where owner = %s and kind = 'immediate' and status = 'sent' "
                        "and sent_at > %s", (owner, self.now - timedelta(hours=1)))
            return cur.fetchone()[0]

    def record_only(self, msg: Message, status: str, reason: str) -> None:
        """A message deliberately not sent (a suppressed customer): on record, to no one."""
        nid = notification_id(msg.key, msg.owner, None)
        if self._existing(nid) is None:
            self._record(nid, msg, None, status, reason, 0)

    def send(self, msg: Message, contacts: list[Contact]) -> None:
        """Send ``msg`` to each contact unless already done; record every outcome."""
        if not contacts:
            nid = notification_id(msg.key, msg.owner, None)
            if self._existing(nid) is None:
                why = (f"no contact for owner {msg.owner} in {self.contacts.path.name}; add a "
                       "row (owner,channel,address)")
                self._record(nid, msg, None, "no_contact", why, 0)
                self.stats.not_sent += 1
                self.stats.problems[why] += 1
            return
        defer: str | None = None
        if msg.kind == "immediate":
            if in_quiet_hours(self.cfg, self.now, self.tz):
                defer = "quiet hours {}-{}: folded into the next digest".format(*self.cfg.quiet_hours)
            elif self._sent_last_hour(msg.owner) >= self.cfg.max_immediate_per_owner_per_hour:
                defer = (f"{msg.owner} had {self.cfg.max_immediate_per_owner_per_hour} immediate "
                         "alerts in the last hour: folded into the next digest")
        for c in contacts:
            nid = notification_id(msg.key, msg.owner, c)
            if self._existing(nid) in FINAL:
                continue
            if defer:
                self._record(nid, msg, c, "deferred", defer, 0)
                self.stats.deferred += 1
                continue
            try:
                url = apprise_url(c, self.cfg.smtp)
            except InvalidChannel as e:
                why = f"{self.contacts.path.name} {e}" if str(e).startswith("line ") else str(e)
                self._record(nid, msg, c, "invalid", why, 0)
                self.stats.not_sent += 1
                self.stats.problems[why] += 1
                continue
            ok, attempts, error = deliver(url, msg.title, msg.body, self.cfg.retries,
                                          self.cfg.retry_delay_seconds,
                                          self.cfg.smtp.timeout_seconds)
            self._record(nid, msg, c, "sent" if ok else "failed", error, attempts)
            if ok:
                self.stats.sent += 1
            else:
                self.stats.failed += 1
                self.stats.problems[f"{c.channel} to {masked(c)} failed after {attempts} "
                                    f"attempt(s): {error}"] += 1


def task_text(task: dict[str, Any], link: str | None) -> str:
    """The body of an immediate alert: the task, why, when, where to find it."""
    lines = [f"Task {task['task_id']} ({task['rule']}): {task['title']}",
             f"Owner: {task['owner_person']} ({task['owner_team']}); priority {task['priority']}",
             f"Due: {task['due_at']:%Y-%m-%d %H:%M %Z}"]
    why = scrub(task.get("evidence") or {})
    if why:
        lines.append("Why: " + ", ".join(f"{k}={v}" for k, v in sorted(why.items())))
    if link:
        lines.append(f"Link: {link.format(task_id=task['task_id'])}")
    return "\n".join(lines)
