"""Which errors can heal by themselves, so a Prefect retry may succeed where a first try did not.

Only these: the connection was lost or refused (a server restart, a network blip,
``pg_terminate_backend``), a lock could not be had in time, a serialization failure
or a deadlock (the other transaction wins; ours can run again). Everything else —
a broken file, a failing dbt test, a bad query, a statement timeout, a read error
COPY reports as "canceled" — fails the same way again, so retrying only delays the
message. Our own errors (``WarehouseError``, ``StageError``) carry ``transient`` when
they wrap such a cause, since they are raised ``from None`` to keep tracebacks short.
"""

from __future__ import annotations

import psycopg2

# SQLSTATEs worth retrying: class 08 (connection exception), serialization failure,
# deadlock, lock not available, admin/crash shutdown, cannot connect now, too many
# connections. 57014 (query canceled: statement timeout, or a failed COPY read) is not.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})

# The same conditions when there is no SQLSTATE (libpq reports a dead connection as
# text), or when the error arrives as text (dbt's failure messages).
TRANSIENT_MESSAGES = (
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "connection already closed",
    "connection refused",
    "could not connect to server",
    "could not receive data from server",
    "could not send data to server",
    "ssl connection has been closed unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "could not serialize access",
    "deadlock detected",
    "canceling statement due to lock timeout",
    "could not obtain lock",
    "too many clients already",
    "timeout expired",
)


def message_is_transient(text: str) -> bool:
    """True when an error's text describes one of the transient conditions."""
    low = text.lower()
    return any(m in low for m in TRANSIENT_MESSAGES)


def is_transient(exc: BaseException | None) -> bool:
    """True if ``exc`` (or what it wraps) is a condition a retry can get past."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "transient", False):
            return True
        if isinstance(exc, psycopg2.Error):
            code = exc.pgcode
            if code:
                return code.startswith("08") or code in TRANSIENT_SQLSTATES
            return (isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
                    and message_is_transient(str(exc)))
        orig = getattr(exc, "orig", None)  # SQLAlchemy (GX) wraps the driver's error
        exc = orig if isinstance(orig, BaseException) else (exc.__cause__ or exc.__context__)
    return False
