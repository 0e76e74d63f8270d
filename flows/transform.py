"""Transform: run dbt in-process against the warehouse.

dbt runs through ``dbtRunner`` (≈0.1 s per call against ≈2 s for the CLI) with
``run_date`` as a var. The build is split in two around the Python models:
everything not tagged ``after_python`` first, then the Python step (drivers,
churn), then the models that read its outputs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flows import docs_site
from flows.config import REPO_ROOT, Settings
from flows.docs_site import DocsSite
from flows.errors import StageError
from flows.transient import is_transient, message_is_transient
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

DBT_DIR = REPO_ROOT / "dbt_project"
AFTER_PYTHON = "tag:after_python"
# Marts that read the tasks the run's task stage writes: built after it (a task resolved
# or opened tonight counts tonight), not with the other after-python models.
AFTER_TASKS = "mart_task_effects"


@dataclass
class DbtOutcome:
    """Counts of a dbt invocation, by node status."""

    command: list[str]
    success: bool
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed_dir(settings: Settings) -> Path:
    """The seed folder dbt reads: the project's own, or a copy holding the configured files.

    Users point ``reference:`` at their own catalogue and routing table; dbt only
    reads seeds from a folder, so those files are gathered into one under home.
    """
    ref = settings.reference
    wanted = {
        "touchpoint_catalogue.csv": Path(ref.touchpoint_catalogue),
        "owner_routing.csv": Path(ref.owner_routing),
        "survey_items.csv": Path(ref.survey_items),
        "owner_contacts.csv": Path(ref.owner_contacts),
        "owner_capacity.csv": Path(ref.owner_capacity),
    }
    default = DBT_DIR / "seeds"
    if all(p.resolve() == (default / n).resolve() for n, p in wanted.items()):
        return default
    out = Path(settings.home) / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    for f in default.glob("*.csv"):
        shutil.copyfile(f, out / f.name)
    for name, path in wanted.items():
        shutil.copyfile(path, out / name)
    return out


FULL_TESTS_ENV = "CXLOOP_FULL_TESTS"


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def full_tests_var(settings: Settings | None = None,
                   run_date: date | None = None) -> dict[str, object]:
    """``{"full_tests": True}`` on the configured night of the week
    (``full_tests_weekday``, Sunday by default) or when ``CXLOOP_FULL_TESTS`` is set
    (1, true, yes).

    Tests of incremental models check the rows their last build rewrote
    (dbt_project/macros/test_slice.sql); once a week every row is tested, without
    rebuilding anything, as a ``--full-refresh`` run does, so a problem the slices
    cannot see (a row an old build wrote) surfaces within a week.
    """
    value = os.environ.get(FULL_TESTS_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return {"full_tests": True}
    day = getattr(settings, "full_tests_weekday", None)
    if day and run_date is not None and WEEKDAYS[run_date.weekday()] == day:
        return {"full_tests": True}
    return {}


def dbt_env(wh: Warehouse, settings: Settings) -> dict[str, str]:
    """The connection environment of dbt's sessions: the warehouse's, and the configured
    ``dbt_work_mem`` through libpq's PGOPTIONS (added to any the caller set), so every
    model and test of a build sorts and hashes in memory of that size."""
    env = wh.dbt_env()
    if settings.dbt_work_mem:
        env["PGOPTIONS"] = " ".join(
            x for x in (os.environ.get("PGOPTIONS", ""), f"-c work_mem={settings.dbt_work_mem}") if x)
    return env


def dbt_vars(settings: Settings, run_date: date,
             extra_vars: dict[str, object] | None = None) -> dict[str, object]:
    """The ``--vars`` of a dbt invocation for ``run_date``.

    dbt re-parses the whole project whenever these differ from its last invocation's
    (partial parsing keys on them), a few seconds each time, so callers of one date
    should pass the same set. ``task_dates_from`` defaults to ``run_date``, which the
    models read the same way as unset: an alerts run and a nightly run of one date then
    share a parse.
    """
    return {**settings.dbt_vars(), "run_date": run_date.isoformat(),
            "task_dates_from": run_date.isoformat(),
            **full_tests_var(settings, run_date), **(extra_vars or {})}


def target_dir(settings: Settings) -> Path:
    """dbt's target folder for the home (compiled SQL, run results, parse state)."""
    return Path(settings.home).resolve() / "dbt" / "target"


def run_dbt(wh: Warehouse, settings: Settings, args: list[str], run_date: date,
            extra_vars: dict[str, object] | None = None,
            target_path: Path | None = None) -> DbtOutcome:
    """Invoke one dbt command (``build``, ``seed``, ``docs generate``...) in-process."""
    from dbt.cli.main import dbtRunner

    variables = dbt_vars(settings, run_date, extra_vars)
    cmd = [
        *args,
        "--project-dir", str(DBT_DIR),
        "--profiles-dir", str(DBT_DIR),
        "--target-path", str(target_path or target_dir(settings)),
        "--log-path", str(Path(settings.home).resolve() / "dbt" / "logs"),
        "--vars", json.dumps(variables),
        "--quiet",
    ]
    # Relative on purpose: with an absolute seed path dbt writes each seed's SQL over its CSV.
    seeds = os.path.relpath(seed_dir(settings), DBT_DIR)
    env = {**dbt_env(wh, settings), "CXLOOP_SEED_DIR": seeds,
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    log.info("dbt %s", " ".join(args))
    with _env(env):
        res = dbtRunner().invoke(cmd)
    outcome = DbtOutcome(command=args, success=bool(res.success))
    if res.exception is not None:
        err = StageError(f"dbt {' '.join(args)} could not run: {res.exception}")
        err.transient = is_transient(res.exception) or message_is_transient(str(res.exception))
        raise err
    results = getattr(res.result, "results", None) or []
    for r in results:
        status = str(getattr(r, "status", "unknown"))
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status in ("error", "fail"):
            node = getattr(r, "node", None)
            name = getattr(node, "unique_id", "?")
            outcome.failures.append(f"{name}: {(getattr(r, 'message', '') or '').strip()}")
    return outcome


def build(wh: Warehouse, settings: Settings, run_date: date, select: str | None = None,
          exclude: str | None = None, full_refresh: bool = False,
          extra_vars: dict[str, object] | None = None) -> DbtOutcome:
    """``dbt build`` (seeds, models, tests) of a selection; raises if any node fails."""
    args = ["build"]
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    if full_refresh:
        args.append("--full-refresh")
    outcome = run_dbt(wh, settings, args, run_date, extra_vars)
    if not outcome.success:
        shown = "\n  ".join(outcome.failures[:10]) or "see the dbt log under CXLOOP_HOME/dbt/logs"
        err = StageError(f"dbt {' '.join(args)} failed:\n  {shown}")
        # A model that lost its connection or a lock may build on a second try; a failing
        # test or a SQL error fails again. Retry only when every failure is the former.
        err.transient = bool(outcome.failures) and all(
            message_is_transient(f) for f in outcome.failures)
        raise err
    return outcome


def docs_generate(wh: Warehouse, settings: Settings, run_date: date,
                  extra_vars: dict[str, object] | None = None) -> DocsSite:
    """The dbt docs site (catalog + manifest) in ``<home>/dbt/docs``, regenerated only when
    its inputs changed since it was last generated (``flows.docs_site``)."""
    folder = docs_site.site(settings)
    inputs = docs_site.docs_inputs(wh, DBT_DIR, seed_dir(settings),
                                   dbt_vars(settings, run_date, extra_vars))
    since = docs_site.read_stamp(folder).get("run_date", "never")
    if docs_site.current(folder, inputs):
        log.info("dbt docs unchanged since the run of %s: not regenerated", since)
        return DocsSite(folder / "index.html", False, since)
    docs_site.seed_parse_state(target_dir(settings), folder)
    # The run's data is built and tested by now: a site dbt could not finish is not
    # stamped, so the next run tries again, and the run warns instead of failing.
    try:
        out = run_dbt(wh, settings, ["docs", "generate"], run_date, extra_vars,
                      target_path=folder)
    except StageError as e:
        return DocsSite(folder / "index.html", False, since, error=str(e))
    if not out.success:
        why = "; ".join(out.failures[:3]) or "see the dbt log under CXLOOP_HOME/dbt/logs"
        return DocsSite(folder / "index.html", False, since,
                        error=f"dbt docs generate failed: {why}")
    docs_site.write_stamp(folder, inputs, run_date)
    return DocsSite(folder / "index.html", True, run_date.isoformat())
