"""The dbt docs site: regenerated when what it shows changed, not every night.

``dbt docs generate`` compiles every model and test and reads the warehouse's catalog:
6 s on the demo, 17-29 s on a year of a million customers, every run, for a site that
only changes when the project, the seeds, the configuration or the warehouse's tables
and columns do. The site lives in its own folder (``<home>/dbt/docs``), which later
builds do not overwrite (they rewrite ``target/manifest.json``), next to a stamp of its
inputs; a run whose inputs match the stamp keeps the site as it is. The compiled SQL on
the site is then that of the run that last regenerated it (its ``run_date``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flows.config import Settings
from flows.warehouse import Warehouse

STAMP = "cxloop_docs_inputs.json"
# vars that change with every run and only change the compiled SQL's dates
PER_RUN_VARS = ("run_date", "task_dates_from", "full_tests")
SKIPPED_PARTS = {"target", "logs", "dbt_packages", "docs", "__pycache__"}

# every relation's columns and types outside the system schemas, partitions left out (a
# new month's partition is not a new table), as one digest
_RELATIONS_SQL = """
select md5(coalesce(string_agg(
           n.nspname || '.' || c.relname || '.' || a.attname || ':'
           || format_type(a.atttypid, a.atttypmod), ',' order by n.nspname, c.relname, a.attnum),
       ''))
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where c.relkind in ('r', 'v', 'm', 'p', 'f') and not c.relispartition
  and n.nspname not in ('information_schema', 'pg_catalog', 'pg_toast')
  and n.nspname not like 'pg_temp%%' and n.nspname not like 'pg_toast_temp%%'
"""


@dataclass
class DocsSite:
    """Where the site is and whether this run regenerated it."""

    index: Path
    regenerated: bool
    generated_for: str  # the run date the site was last generated for
    error: str | None = None  # dbt docs generate ran and failed: the site was not updated

    def detail(self) -> str:
        if self.error:
            return f"not regenerated: {self.error}"
        if self.regenerated:
            return f"regenerated for {self.generated_for}"
        return f"unchanged since the run of {self.generated_for}: not regenerated"


def _files_digest(h: hashlib._Hash, root: Path) -> None:
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not SKIPPED_PARTS & set(rel.parts):
            h.update(str(rel).encode())
            h.update(b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")


def docs_inputs(wh: Warehouse, dbt_dir: Path, seeds: Path, variables: dict[str, object]) -> str:
    """A digest of everything the docs site shows but the dates: the dbt project's files,
    the seed folder the run reads, the vars other than the per-run ones, dbt's version and
    the warehouse's relations with their columns and types."""
    from dbt.version import __version__ as dbt_version

    h = hashlib.sha256()
    _files_digest(h, dbt_dir)
    if seeds.resolve() != (dbt_dir / "seeds").resolve():
        _files_digest(h, seeds)
    stable = {k: v for k, v in variables.items() if k not in PER_RUN_VARS}
    h.update(json.dumps(stable, sort_keys=True, default=str).encode())
    h.update(dbt_version.encode())
    with wh.transaction() as cur:
        cur.execute(_RELATIONS_SQL)
        h.update(cur.fetchone()[0].encode())
    return h.hexdigest()


def read_stamp(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def current(folder: Path, inputs: str) -> bool:
    """True when the site in ``folder`` is complete and was generated from ``inputs``."""
    return read_stamp(folder).get("inputs") == inputs and all(
        (folder / f).is_file() for f in ("index.html", "manifest.json", "catalog.json"))


def write_stamp(folder: Path, inputs: str, run_date: date) -> None:
    (folder / STAMP).write_text(json.dumps({"inputs": inputs,
                                            "run_date": run_date.isoformat()}) + "\n")


def seed_parse_state(target: Path, folder: Path) -> None:
    """Start the docs folder from the builds' partial-parse state: with the run's vars
    unchanged, dbt then skips parsing instead of parsing the project again for a folder
    of its own."""
    state = target / "partial_parse.msgpack"
    if state.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(state, folder / "partial_parse.msgpack")


def site(settings: Settings) -> Path:
    return Path(settings.home).resolve() / "dbt" / "docs"
