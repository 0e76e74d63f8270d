"""Reference refresh: the configured codes, domain and source zones, copied into ``ops``.

The suites and COPY read the reference codes, the domain's ranges and each source's
timezone from ``ops`` tables. They are checked first (a ConfigError before anything is
loaded) and copied there before each load.
"""

from __future__ import annotations

from psycopg2 import sql

from flows.config import Settings
from flows.rules import store_domain
from flows.warehouse import Warehouse, set_default_zone


def refresh_reference(wh: Warehouse, settings: Settings) -> None:
    """Check the configured reference files and domain (a ConfigError before anything is
    loaded), then copy the codes and the domain into ``ops`` for the suites."""
    from flows.reference import check_reference

    codes = check_reference(settings)
    specs = [("ref_touchpoints", "touchpoint_code", codes.touchpoints),
             ("ref_survey_items", "item_code", codes.items)]
    with wh.transaction() as cur:
        for table, col, values in specs:
            cur.execute(sql.SQL("create table if not exists ops.{} ({} text primary key)").format(
                sql.Identifier(table), sql.Identifier(col)))
            cur.execute(sql.SQL("truncate ops.{}").format(sql.Identifier(table)))
            cur.executemany(sql.SQL("insert into ops.{} values (%s)").format(
                sql.Identifier(table)), [(c,) for c in values])
        store_domain(cur, settings.domain)
        cur.execute("truncate ops.ref_source_zones")
        cur.executemany("insert into ops.ref_source_zones values (%s, %s)",
                        sorted(settings.source_timezones().items()))
        set_default_zone(cur, settings.timezone)
