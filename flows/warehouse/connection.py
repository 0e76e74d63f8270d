"""Where the warehouse is and how to talk to it: the ``Warehouse`` value.

Kept apart from starting servers and migrating schemas because every stage
(load, validate, dbt, churn, actions, reports) needs only this: a URL, the
connection and transaction helpers, the libpq/SQLAlchemy/dbt spellings of the
URL, and the session time zone every connection is opened in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlparse

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from flows.errors import WarehouseError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse is: a libpq URL plus, when embedded, its data folder."""

    url: str
    pgdata: Path | None = None
    # The session zone of every connection (the configured ``timezone``): dates compared
    # with timestamps (extract dates, run dates, GX rules, dbt's staging casts) are days of
    # this zone. None: the server's default.
    timezone: str | None = None

    @property
    def embedded(self) -> bool:
        return self.pgdata is not None

    def parts(self) -> dict[str, str]:
        """Host (or socket dir), port, user, password and database of the URL."""
        u = urlparse(self.url)
        q = parse_qs(u.query)
        host = q.get("host", [u.hostname or "localhost"])[0]
        return {
            "host": unquote(host),
            "port": str(q.get("port", [u.port or "5432"])[0]),
            "user": unquote(u.username or "postgres"),
            "password": unquote(u.password or ""),
            "dbname": u.path.lstrip("/") or "postgres",
        }

    def sqlalchemy_url(self) -> str:
        """A SQLAlchemy URL; GX rejects host-less URIs, so the socket dir goes in the query."""
        p = self.parts()
        auth = quote(p["user"], safe="")
        if p["password"]:
            auth += ":" + quote(p["password"], safe="")
        zone = f"options={quote(self._options())}" if self.timezone else ""
        if p["host"].startswith("/"):
            return (
                f"postgresql+psycopg2://{auth}@localhost:{p['port']}/{p['dbname']}"
                f"?host={p['host']}" + (f"&{zone}" if zone else "")
            )
        return (f"postgresql+psycopg2://{auth}@{p['host']}:{p['port']}/{p['dbname']}"
                + (f"?{zone}" if zone else ""))

    def _options(self) -> str:
        """libpq ``options`` setting the session zone (a zone name holds no spaces)."""
        return f"-c TimeZone={self.timezone}"

    def dbt_env(self) -> dict[str, str]:
        """Environment for ``dbt_project/profiles.yml``, which reads only env vars."""
        p = self.parts()
        return {
            "CXLOOP_DBT_HOST": p["host"],
            "CXLOOP_DBT_PORT": p["port"],
            "CXLOOP_DBT_USER": p["user"],
            "CXLOOP_DBT_PASSWORD": p["password"],
            "CXLOOP_DBT_DBNAME": p["dbname"],
            # libpq reads PGTZ at connect: dbt's sessions run in the configured zone.
            **({"PGTZ": self.timezone} if self.timezone else {}),
        }

    def connect(self, autocommit: bool = False) -> psycopg2.extensions.connection:
        try:
            zone = {"options": self._options()} if self.timezone else {}
            conn = psycopg2.connect(self.url, connect_timeout=10, **zone)
        except psycopg2.OperationalError as e:
            where = "the embedded warehouse" if self.embedded else "CXLOOP_WAREHOUSE_URL"
            from flows.transient import is_transient

            first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            err = WarehouseError(
                f"cannot connect to {where} ({redact(self.url)}): {first}\n"
                "Check that the server is running and the URL, user and password are right."
            )
            # A refused or dropped connection may come back (a restart); a wrong password
            # or database does not: only the first is retried.
            err.transient = is_transient(e)
            raise err from None
        conn.autocommit = autocommit
        return conn

    def read_frame(self, query: str | sql.Composable, params: dict | tuple | None = None) -> pd.DataFrame:
        """A query result as a DataFrame (through a cursor: pandas wants SQLAlchemy otherwise)."""
        import pandas as pd

        with self.transaction() as cur:
            cur.execute(query, params)
            cols = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        conn = self.connect()
        try:
            with conn:
                with conn.cursor() as cur:
                    yield cur
        finally:
            conn.close()


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    u = urlparse(url)
    if u.password:
        netloc = u.netloc.replace(":" + u.password + "@", ":***@")
        return u._replace(netloc=netloc).geturl()
    return url
