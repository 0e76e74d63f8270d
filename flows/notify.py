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

    def _existing(self, nids: list[str]) -> dict[str, str]:
        """Statuses on record for these notification ids, in one query."""
        with self._cursor() as cur:
            cur.execute("select notification_id, status from ops.notifications "
                        "where notification_id = any(%s)", (nids,))
            return dict(cur.fetchall())

    def _row(self, nid: str, msg: Message, c: Contact | None, status: str,
             error: str | None, attempts: int) -> tuple[Any, ...]:
        task = msg.task_ids[0] if msg.kind == "immediate" and msg.task_ids else None
        return (nid, msg.key, task, msg.task_ids, msg.kind, msg.owner,
                c.channel if c else None, masked(c) if c else None,
                self.now if status == "sent" else None, status, error, attempts, self.run_id)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """Upsert notification rows, many per statement (a backfill's breaches are 100k+)."""
        from psycopg2.extras import execute_values

        if not rows:
            return
        with self._cursor() as cur:
            execute_values(
                cur,
                """insert into ops.notifications (notification_id, message_key, task_id,
                     task_ids, kind, owner, channel, recipient, sent_at, status, error, attempt,
                     run_id)
                   values %s
                   on conflict (notification_id) do update set status = excluded.status,
                     error = excluded.error, sent_at = excluded.sent_at, run_id = excluded.run_id,
                     attempt = ops.notifications.attempt + excluded.attempt, updated_at = now()""",
                rows, page_size=5000)

    def _sent_last_hour(self, owners: list[str]) -> Counter:
        """Immediate messages (distinct keys) each owner was sent in the last hour."""
        with self._cursor() as cur:
            cur.execute("select owner, count(distinct message_key) from ops.notifications "
                        "where owner = any(%s) and kind = 'immediate' and status = 'sent' "
                        "and sent_at > %s group by owner",
                        (owners, self.now - timedelta(hours=1)))
            return Counter(dict(cur.fetchall()))

    def record_only(self, msg: Message, status: str, reason: str) -> None:
        """A message deliberately not sent (a suppressed customer): on record, to no one."""
        self.record_all([(msg, reason)], status)

    def record_all(self, msgs: list[tuple[Message, str]], status: str) -> None:
        """``record_only`` for many (message, reason): rows not yet on record, in one go."""
        ids = [notification_id(m.key, m.owner, None) for m, _ in msgs]
        known = self._existing(ids)
        self._write([self._row(nid, m, None, status, why, 0)
                     for nid, (m, why) in zip(ids, msgs, strict=True) if nid not in known])

    def send(self, msg: Message, contacts: list[Contact]) -> None:
        """Send ``msg`` to each contact unless already done; record every outcome."""
        self.send_all([(msg, contacts)])

    def send_all(self, batch: list[tuple[Message, list[Contact]]]) -> None:
        """Send each message to its contacts unless already done; record every outcome.

        What is already on record, and each owner's count for the hourly cap, are read
        once for the whole batch; a message sent is on record at once (a crash never
        resends it), the ones not sent (deferred, no contact, invalid) are written
        together at the end, so an owner at the cap costs a row, not a round trip.
        """
        ids = {(i, c): notification_id(m.key, m.owner, c)
               for i, (m, cs) in enumerate(batch) for c in (cs or [None])}
        known = self._existing(list(ids.values()))
        immediate = sorted({m.owner for m, _ in batch if m.kind == "immediate"})
        quiet = bool(immediate) and in_quiet_hours(self.cfg, self.now, self.tz)
        sent_hour = self._sent_last_hour(immediate) if immediate and not quiet else Counter()
        cap = self.cfg.max_immediate_per_owner_per_hour
        later: list[tuple[Any, ...]] = []
        try:
            for i, (msg, contacts) in enumerate(batch):
                if not contacts:
                    nid = ids[(i, None)]
                    if nid not in known:
                        why = (f"no contact for owner {msg.owner} in {self.contacts.path.name};"
                               " add a row (owner,channel,address)")
                        later.append(self._row(nid, msg, None, "no_contact", why, 0))
                        known[nid] = "no_contact"
                        self.stats.not_sent += 1
                        self.stats.problems[why] += 1
                    continue
                defer: str | None = None
                if msg.kind == "immediate":
                    if quiet:
                        defer = ("quiet hours {}-{}: folded into the next digest"
                                 .format(*self.cfg.quiet_hours))
                    elif sent_hour[msg.owner] >= cap:
                        defer = (f"{msg.owner} had {cap} immediate alerts in the last hour: "
                                 "folded into the next digest")
                counted = False
                for c in contacts:
                    nid = ids[(i, c)]
                    if known.get(nid) in FINAL:
                        continue
                    if defer:
                        later.append(self._row(nid, msg, c, "deferred", defer, 0))
                        known[nid] = "deferred"
                        self.stats.deferred += 1
                        continue
                    try:
                        url = apprise_url(c, self.cfg.smtp)
                    except InvalidChannel as e:
                        why = (f"{self.contacts.path.name} {e}" if str(e).startswith("line ")
                               else str(e))
                        later.append(self._row(nid, msg, c, "invalid", why, 0))
                        known[nid] = "invalid"
                        self.stats.not_sent += 1
                        self.stats.problems[why] += 1
                        continue
                    ok, attempts, error = deliver(url, msg.title, msg.body, self.cfg.retries,
                                                  self.cfg.retry_delay_seconds,
                                                  self.cfg.smtp.timeout_seconds)
                    status = "sent" if ok else "failed"
                    self._write([self._row(nid, msg, c, status, error, attempts)])
                    known[nid] = status
                    if ok:
                        self.stats.sent += 1
                        if msg.kind == "immediate" and not counted:
                            sent_hour[msg.owner] += 1
                            counted = True
                    else:
                        self.stats.failed += 1
                        self.stats.problems[f"{c.channel} to {masked(c)} failed after "
                                            f"{attempts} attempt(s): {error}"] += 1
        finally:
            self._write(later)


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
