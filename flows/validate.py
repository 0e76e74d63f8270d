"""Validate: run each entity's Great Expectations suite on its staged batches.

Design (measured, see DESIGN.md): batches are COPYed as text into an unlogged
stage table and validated *in the warehouse* through GX's PostgreSQL data
source, which is ~3x faster than pandas at scale and keeps memory flat. Every
row rule is an ``UnexpectedRowsExpectation`` whose SQL returns the offending
rows, so the same query that gives GX its verdict also tells us which rows to
quarantine; we check that both agree on the count.

The suites live as JSON in ``expectations/`` and are reviewed like code. They
are generated from the extract contract (``flows/entities.py``) by
``write_suites`` so they cannot drift from it; a test checks they are in sync.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.config import REPO_ROOT
from flows.entities import (
    CHANNELS,
    ENTITIES,
    EXPERIENCE_DIMENSIONS,
    SCORE_RANGES,
    SURVEY_TYPES,
    Entity,
)
from flows.errors import StageError

log = logging.getLogger(__name__)

SUITES_DIR = REPO_ROOT / "expectations"
# Braces doubled: GX fills ``{batch}`` with str.format, so literal braces must be escaped.
EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{{2,}}$"
ALLOWED_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "interactions": {"channel": CHANNELS},
    "invitations": {"survey_type": SURVEY_TYPES},
    "responses": {"survey_type": SURVEY_TYPES, "comment_language": ("en", "zh")},
    "item_ratings": {"dimension": EXPERIENCE_DIMENSIONS},
    "subscriptions": {"status": ("active", "cancelled")},
    "customers": {"acquisition_channel": CHANNELS},
}
# Codes checked against reference tables the pipeline refreshes from the config.
REFERENCE_SETS = {
    "touchpoint_code": ("ops.ref_touchpoints", "touchpoint_code", "the touchpoint catalogue"),
    "item_code": ("ops.ref_survey_items", "item_code", "the survey item list"),
}


@dataclass(frozen=True)
class Rule:
    """One row-level rule: its name, a message a person can act on, the SQL of bad rows."""

    name: str
    description: str
    query: str


def _lit(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def entity_rules(e: Entity) -> list[Rule]:
    """The row-level rules of an entity, derived from the extract contract."""
    rules: list[Rule] = []
    q = '"{}"'.format
    for c in e.columns:
        if c.required:
            rules.append(Rule(
                f"{c.name}_not_null",
                f"{c.name} is required but empty",
                f"select * from {{batch}} where {q(c.name)} is null",
            ))
    for c in e.columns:
        if c.pg_type != "text":
            rules.append(Rule(
                f"{c.name}_is_{c.pg_type.split('(')[0]}",
                f"{c.name} is not a valid {c.pg_type}",
                f"select * from {{batch}} where {q(c.name)} is not null "
                f"and not pg_input_is_valid({q(c.name)}, '{c.pg_type}')",
            ))
    keys = ", ".join(q(k) for k in e.key)
    not_null_keys = " and ".join(f"{q(k)} is not null" for k in e.key)
    rules.append(Rule(
        "key_unique_in_batch",
        f"{' + '.join(e.key)} repeats an earlier row of the same file",
        "select * from (select *, row_number() over (partition by _batch_id, "
        f"{keys} order by _row_number) as _occurrence from {{batch}} where {not_null_keys}) d "
        "where _occurrence > 1",
    ))
    for col, (lo, hi) in SCORE_RANGES.get(e.name, {}).items():
        rules.append(Rule(
            f"{col}_in_range",
            f"{col} must be between {lo} and {hi}",
            f"select * from {{batch}} where pg_input_is_valid({q(col)}, 'integer') "
            f"and {q(col)}::integer not between {lo} and {hi}",
        ))
    for col, allowed in ALLOWED_SETS.get(e.name, {}).items():
        rules.append(Rule(
            f"{col}_allowed",
            f"{col} must be one of {', '.join(allowed)}",
            f"select * from {{batch}} where {q(col)} is not null and {q(col)} not in ({_lit(allowed)})",
        ))
    for col, (table, ref_col, what) in REFERENCE_SETS.items():
        if col in e.column_names:
            rules.append(Rule(
                f"{col}_known",
                f"{col} is not in {what}",
                f"select * from {{batch}} where {q(col)} is not null "
                f"and {q(col)} not in (select {ref_col} from {table})",
            ))
    if e.event_time:
        col = e.column(e.event_time)
        rules.append(Rule(
            f"{col.name}_not_after_extract_date",
            f"{col.name} is after the extract date of its file",
            f"select * from {{batch}} where pg_input_is_valid({q(col.name)}, '{col.pg_type}') "
            f"and {q(col.name)}::date > _extract_date",
        ))
    if e.name == "responses":
        rules.append(Rule(
            "responded_not_before_invited",
            "responded_at is before invited_at",
            "select * from {batch} where pg_input_is_valid(responded_at, 'timestamp') "
            "and pg_input_is_valid(invited_at, 'timestamp') "
            "and responded_at::timestamp < invited_at::timestamp",
        ))
    if "email" in e.column_names:
        rules.append(Rule(
            "email_format",
            "email is not a valid address",
            f"select * from {{batch}} where email is not null and email !~ '{EMAIL_REGEX}'",
        ))
    return rules


def suite_dict(e: Entity) -> dict[str, Any]:
    """The GX suite of an entity as the JSON committed in ``expectations/``."""
    from flows.warehouse import LINEAGE_COLUMNS

    stage_columns = e.column_names + [n for n, _ in LINEAGE_COLUMNS if n != "_loaded_at"]
    expectations: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": stage_columns, "exact_match": True},
            "meta": {"rule": "columns_match_contract", "level": "batch"},
        }
    ]
    for r in entity_rules(e):
        expectations.append({
            "type": "unexpected_rows_expectation",
            "kwargs": {"unexpected_rows_query": r.query},
            "description": r.description,
            "meta": {"rule": r.name, "level": "row"},
        })
    return {"name": f"cxloop_{e.name}", "expectations": expectations,
            "meta": {"entity": e.name, "source": e.source,
                     "generated_from": "flows/entities.py via flows.validate.write_suites"}}


def write_suites(directory: Path = SUITES_DIR) -> list[Path]:
    """(Re)write every suite JSON from the contract; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in ENTITIES.values():
        p = directory / f"{e.name}.json"
        p.write_text(json.dumps(suite_dict(e), indent=2, ensure_ascii=False) + "\n")
        paths.append(p)
    return paths


def load_suite(entity: str, directory: Path = SUITES_DIR) -> dict[str, Any]:
    path = directory / f"{entity}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"no expectation suite for {entity}: {path} is missing") from None
    except json.JSONDecodeError as e:
        raise StageError(f"{path}: line {e.lineno}: not valid JSON: {e.msg}") from None


@dataclass
class ValidationOutcome:
    """What GX said about one entity's stage table."""

    entity: str
    success: bool
    failed_rules: dict[str, str] = field(default_factory=dict)  # rule -> description
    failed_queries: dict[str, str] = field(default_factory=dict)  # rule -> SQL of bad rows
    observed: dict[str, int] = field(default_factory=dict)  # rule -> GX's bad-row count
    batch_failures: list[str] = field(default_factory=list)  # table-level problems
    docs_path: str | None = None


def _exception_message(info: dict[str, Any]) -> str | None:
    """GX reports errors flat for some expectations and per metric for others: find either."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and (value.get("raised_exception")
                                        or value.get("exception_message")):
            return str(value.get("exception_message") or value.get("exception_traceback"))
    return None


def stage_query(rule_query: str, table: str) -> str:
    """A rule's SQL with ``{batch}`` filled the way GX fills it (str.format)."""
    return rule_query.format(batch=table)


class GxRunner:
    """A file-backed GX context under ``<home>/gx`` with one Postgres data source.

    Built once per run: the context, data source and assets are reused across
    entities, which keeps GX's fixed cost to about a second per run.
    """

    def __init__(self, home: Path, sqlalchemy_url: str):
        self.lock_path = Path(home) / "gx.lock"
        with self._exclusive():
            self._init(home, sqlalchemy_url)

    @contextlib.contextmanager
    def _exclusive(self):
        """One GX writer at a time across processes (Dask workers share the context folder,
        and GX rewrites its YAML and JSON stores on every add_or_update)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _init(self, home: Path, sqlalchemy_url: str) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        warnings.filterwarnings("ignore", module="great_expectations")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        root = Path(home) / "gx"
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_or_update_postgres(
            "warehouse", connection_string=sqlalchemy_url
        )

    def validate(self, entity: str, schema: str, table: str,
                 suite_json: dict[str, Any]) -> ValidationOutcome:
        with self._exclusive():
            try:
                return self._validate(entity, schema, table, suite_json)
            finally:
                # Hold no idle sessions between validations: a runner cached for the
                # process would otherwise keep connections that block DROP/TEMPLATE.
                self.datasource.get_engine().dispose()

    def _validate(self, entity: str, schema: str, table: str,
                  suite_json: dict[str, Any]) -> ValidationOutcome:
        gx = self.gx
        asset_names = [a.name for a in self.datasource.assets]
        if entity in asset_names:
            self.datasource.delete_asset(entity)
        asset = self.datasource.add_table_asset(entity, table_name=table, schema_name=schema)
        batch_def = asset.add_batch_definition_whole_table("staged")
        suite = gx.ExpectationSuite(name=suite_json["name"], meta=suite_json.get("meta", {}))
        for exp in suite_json["expectations"]:
            cfg = gx.expectations.expectation_configuration.ExpectationConfiguration(
                type=exp["type"], kwargs=exp["kwargs"], meta=exp.get("meta"),
                description=exp.get("description"),
            )
            # add_expectation_configuration merges row-SQL rules into one; objects don't.
            suite.add_expectation(cfg.to_domain_obj())
        suite = self.context.suites.add_or_update(suite)
        vd = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{entity}_staged", data=batch_def, suite=suite)
        )
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"cxloop_{entity}",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "SUMMARY"},
        ))
        result = checkpoint.run()
        outcome = ValidationOutcome(entity=entity, success=bool(result.success))
        for vr in result.run_results.values():
            for r in vr.results:
                meta = r.expectation_config.meta or {}
                rule = meta.get("rule", r.expectation_config.type)
                problem = _exception_message(r.exception_info or {})
                if problem:
                    raise StageError(
                        f"expectation {rule} of suite {suite_json['name']} could not run: {problem}"
                    )
                if r.success:
                    continue
                if meta.get("level") == "row":
                    outcome.failed_rules[rule] = r.expectation_config.description or rule
                    outcome.failed_queries[rule] = r.expectation_config.kwargs[
                        "unexpected_rows_query"
                    ]
                    outcome.observed[rule] = int(r.result.get("observed_value") or 0)
                else:
                    outcome.batch_failures.append(
                        f"{rule}: observed {r.result.get('observed_value')}"
                    )
        outcome.docs_path = self.docs_path()
        return outcome

    def docs_path(self) -> str | None:
        for site in self.context.get_docs_sites_urls():
            url = site.get("site_url")
            if url:
                return url.removeprefix("file://")
        return None


@functools.lru_cache(maxsize=4)
def gx_runner_for(home: str, sqlalchemy_url: str) -> GxRunner:
    """One GX context per process and warehouse: creating one costs about a second."""
    return GxRunner(Path(home), sqlalchemy_url)


def main() -> None:  # pragma: no cover - maintenance entry point
    for p in write_suites():
        print(p)


if __name__ == "__main__":  # python -m flows.validate
    main()
