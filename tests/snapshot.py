"""A content fingerprint of the warehouse, to prove two runs left the same result."""

from __future__ import annotations

import hashlib
import json

import psycopg2

# Wall-clock stamps and build bookkeeping (which run date last rebuilt a row), not content.
VOLATILE = {"scored_at", "built_at", "as_of_at", "as_of_date"}


def _norm(v):
    return round(v, 8) if isinstance(v, float) else v


def warehouse_snapshot(url: str) -> dict[str, str]:
    """A content hash per marts table, plus the tasks and raw row counts."""
    conn = psycopg2.connect(url)
    out: dict[str, str] = {}
    with conn, conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables "
                    "where table_schema = 'marts' order by 1")
        for (t,) in cur.fetchall():
            cur.execute(f"select * from marts.{t}")
            cols = [d.name for d in cur.description]
            keep = [i for i, c in enumerate(cols) if c not in VOLATILE]
            rows = sorted(json.dumps([_norm(r[i]) for i in keep], default=str)
                          for r in cur.fetchall())
            out[f"marts.{t}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
        cur.execute("select task_id, natural_key, status, owner_person, priority, "
                    "escalation_level, condition_active from ops.improvement_tasks order by 1")
        out["ops.improvement_tasks"] = hashlib.sha256(
            json.dumps(cur.fetchall(), default=str).encode()).hexdigest()[:16]
        cur.execute("select table_name from information_schema.tables where table_schema = 'raw' "
                    "and table_name not like '\\_stage%' order by 1")
        for (t,) in cur.fetchall():
            cur.execute(f"select count(*) from raw.{t}")
            out[f"raw.{t}"] = str(cur.fetchone()[0])
    conn.close()
    return out
