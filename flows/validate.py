"""Validate: run each entity's Great Expectations suite on its staged batches.

Design (measured, see ``benchmarks/``): each batch is COPYed straight into a
typed table, and GX validates all of an entity's new batches at once, in the
warehouse, through its PostgreSQL data source. Rules are GX's built-in column
expectations wherever one fits, because GX folds their counts into a single
scan of the table; the few rules no built-in expresses (key unique within a
batch, event date after the file's extract date) are SQL rules that only count.
A file whose values do not all parse (a word in an integer column) is staged as
text instead, and the suite's *parse* rules find those rows first.

For every failed rule our own SQL selects the offending rows for quarantine,
and we check it finds exactly as many as GX counted: a rule whose two forms
disagree stops the run rather than losing or loading rows silently.

The suites live as JSON in ``expectations/`` and are reviewed like code. They
are generated from the extract contract (``flows/entities.py``) and the default
domain by ``write_suites`` so they cannot drift from it; a test checks they are in
sync. A run's own domain (cxloop.yml ``domain:``) reaches them as suite parameters
(``flows/rules.py``).
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
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.config import REPO_ROOT, Domain
from flows.entities import ENTITIES, SURVEY_TYPES, Entity
from flows.errors import StageError
from flows.rules import (
    PARSE,
    TYPED,
    Rule,
    configure_suite,
    domain_parameters,
    domain_rules,
    expectation,
    literal_in_template,
)

log = logging.getLogger(__name__)

SUITES_DIR = REPO_ROOT / "expectations"
EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
# The pipeline's own vocabulary, the same for every company: literal in the suites.
ALLOWED_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "invitations": {"survey_type": SURVEY_TYPES},
    "responses": {"survey_type": SURVEY_TYPES},
}
# Codes checked against reference tables the pipeline refreshes from the config;
# GX gets their values as suite parameters at run time.
REFERENCE_SETS = {
    "touchpoint_code": ("ops.ref_touchpoints", "touchpoint_code", "the touchpoint catalogue"),
    "item_code": ("ops.ref_survey_items", "item_code", "the survey item list"),
}
def gx_type_name(pg_type: str) -> str:
    """The type name GX reads back from Postgres for a contract type (it compares strings)."""
    base, _, args = pg_type.partition("(")
    name = {"timestamp": "TIMESTAMP WITHOUT TIME ZONE",
            "timestamptz": "TIMESTAMP WITH TIME ZONE"}.get(base, base.upper())
    return f"{name}({args.replace(',', ', ')}" if args else name

COUNT_ONLY = "expect_no_rows_from_query"


def _parameter(column: str) -> str:
    """The suite parameter holding a reference set's codes: touchpoint_code -> touchpoint_codes."""
    return column + "s"


def reference_parameters(cur: Any) -> dict[str, Any]:
    """The suite parameters of the reference-set and domain rules, read from ``ops``."""
    params: dict[str, Any] = {}
    for col, (table, ref_col, _) in REFERENCE_SETS.items():
        cur.execute(f"select {ref_col} from {table} order by 1")  # constants above, not input
        params[_parameter(col)] = [r[0] for r in cur.fetchall()]
    params.update(domain_parameters(cur))
    return params


def _lit(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def entity_rules(e: Entity, domain: Domain | None = None) -> list[Rule]:
    """The row-level rules of an entity, derived from the extract contract and the
    domain (the committed suites use the default domain; a run passes its own values
    as suite parameters)."""
    rules: list[Rule] = []
    q = '"{}"'.format
    for c in e.raw_columns:  # values that do not parse: only a text-staged file can have them
        if c.pg_type != "text":
            bad = (f"select * from {{batch}} where {q(c.name)} is not null "
                   f"and not pg_input_is_valid({q(c.name)}, '{c.pg_type}')")
            kind = "timestamp" if c.pg_type == "timestamptz" else c.pg_type.split("(")[0]
            rules.append(Rule(f"{c.name}_is_{kind}",
                              f"{c.name} is not a valid "
                              f"{'timestamp' if kind == 'timestamp' else c.pg_type}", COUNT_ONLY,
                              {"unexpected_rows_query": bad}, bad, PARSE))
    for c in e.columns:
        if c.required:
            rules.append(Rule(f"{c.name}_not_null", f"{c.name} is required but empty",
                              "expect_column_values_to_not_be_null", {"column": c.name},
                              f"select * from {{batch}} where {q(c.name)} is null"))
    for c in e.columns:
        if c.min_value is not None:
            rules.append(Rule(f"{c.name}_at_least_{c.min_value}",
                              f"{c.name} must be at least {c.min_value}",
                              "expect_column_values_to_be_between",
                              {"column": c.name, "min_value": c.min_value},
                              f"select * from {{batch}} where {q(c.name)} < {c.min_value}"))
    same_key = " and ".join(f"earlier.{q(k)} = later.{q(k)}" for k in e.key)
    # Every occurrence after the first is bad; the first one loads. A hash semi-join:
    # twice as fast here as numbering rows with a window.
    dupes = ("with staged as not materialized (select * from {batch}) "
             "select * from staged later where exists (select 1 from staged earlier "
             f"where earlier._batch_id = later._batch_id and {same_key} "
             "and earlier._row_number < later._row_number)")
    # GX only counts the repeats (n - 1 rows of each key a file holds n times): one hash
    # aggregate, not the self-join quarantine needs to name the rows: the join was the
    # load's dearest statement, 161 s of a 421 s ingest of 1M customers x 365 days
    # (benchmarks/ingest_profile.py; the count-only rules 184 s before, 142 s after).
    # A null key repeats nothing (as in the join).
    keys = ", ".join(q(k) for k in e.key)
    present = " and ".join(f"{q(k)} is not null" for k in e.key)
    repeats = (f"select 1 from (select count(*) as n from {{batch}} where {present} "
               f"group by _batch_id, {keys} having count(*) > 1) as repeated "
               "cross join lateral generate_series(2, repeated.n)")
    rules.append(Rule("key_unique_in_batch",
                      f"{' + '.join(e.key)} repeats an earlier row of the same file",
                      COUNT_ONLY, {"unexpected_rows_query": repeats}, dupes))
    rules += domain_rules(e, domain or Domain())
    for col, allowed in ALLOWED_SETS.get(e.name, {}).items():
        rules.append(Rule(f"{col}_allowed", f"{col} must be one of {', '.join(allowed)}",
                          "expect_column_values_to_be_in_set",
                          {"column": col, "value_set": list(allowed)},
                          f"select * from {{batch}} where {q(col)} not in ({_lit(allowed)})"))
    for col, (table, ref_col, what) in REFERENCE_SETS.items():
        if col in e.column_names:
            rules.append(Rule(f"{col}_known", f"{col} is not in {what}",
                              "expect_column_values_to_be_in_set",
                              {"column": col, "value_set": {"$PARAMETER": _parameter(col)}},
                              f"select * from {{batch}} where {q(col)} not in "
                              f"(select {ref_col} from {table})"))
    if e.event_time:
        col = e.column(e.event_time)
        bad = f"select * from {{batch}} where {q(col.name)}::date > _extract_date"
        rules.append(Rule(f"{col.name}_not_after_extract_date",
                          f"{col.name} is after the extract date of its file", COUNT_ONLY,
                          {"unexpected_rows_query": bad}, bad, shows=(col.name,)))
    if e.name == "responses":
        rules.append(Rule("responded_not_before_invited", "responded_at is before invited_at",
                          "expect_column_pair_values_a_to_be_greater_than_b",
                          {"column_A": "responded_at", "column_B": "invited_at",
                           "or_equal": True, "ignore_row_if": "either_value_is_missing"},
                          "select * from {batch} where responded_at < invited_at",
                          shows=("invited_at", "responded_at")))
    if "email" in e.column_names:
        rules.append(Rule("email_format", "email is not a valid address",
                          "expect_column_values_to_match_regex",
                          {"column": "email", "regex": EMAIL_REGEX},
                          "select * from {batch} where email !~ "
                          + literal_in_template(EMAIL_REGEX)))
    return rules


def table_columns(e: Entity, on: str) -> list[str]:
    """Columns of the table a suite runs on: typed batches carry raw's lineage, the text
    stage has no load time yet."""
    from flows.warehouse import LINEAGE_COLUMNS

    lineage = [n for n, _ in LINEAGE_COLUMNS]
    if on == PARSE:
        lineage.remove("_loaded_at")
    return e.raw_column_names + lineage


def suite_dict(e: Entity) -> dict[str, Any]:
    """The GX suite of an entity as the JSON committed in ``expectations/``.

    ``meta.on`` says which table an expectation judges: ``parse`` ones the text stage of
    a file whose values did not all parse, ``typed`` ones every typed batch.
    """
    expectations: list[dict[str, Any]] = []
    for on in (PARSE, TYPED):
        expectations.append({
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": table_columns(e, on), "exact_match": True},
            "meta": {"rule": "columns_match_contract", "level": "batch", "on": on},
        })
    for c in e.raw_columns:
        expectations.append({
            "type": "expect_column_values_to_be_of_type",
            "kwargs": {"column": c.name, "type_": gx_type_name(c.pg_type)},
            "meta": {"rule": f"{c.name}_type", "level": "batch", "on": TYPED},
        })
    expectations += [expectation(r) for r in entity_rules(e)]
    return {"name": f"cxloop_{e.name}", "expectations": expectations,
            "meta": {"entity": e.name, "source": e.source,
                     "generated_from": "flows/entities.py and the default domain of "
                                       "flows/config_sections/domain.py via "
                                       "flows.validate.write_suites"}}


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
    """What GX said about one table of staged batches."""

    entity: str
    success: bool
    failed_rules: dict[str, str] = field(default_factory=dict)  # rule -> description
    failed_queries: dict[str, str] = field(default_factory=dict)  # rule -> SQL of bad rows
    shows: dict[str, list[str]] = field(default_factory=dict)  # rule -> columns its reason names
    observed: dict[str, int] = field(default_factory=dict)  # rule -> GX's bad-row count
    batch_failures: list[str] = field(default_factory=list)  # table-level problems


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


@functools.cache
def _register_count_only_expectation() -> type:
    """GX's UnexpectedRowsExpectation, counting only.

    The parent also fetches up to 200 of the rows, which is a second full scan of
    a clean batch; quarantine selects the rows itself, so GX's count is all we use.
    Defining the class registers ``expect_no_rows_from_query`` with GX.
    """
    import great_expectations.expectations as gxe

    class ExpectNoRowsFromQuery(gxe.UnexpectedRowsExpectation):
        metric_dependencies = ("unexpected_rows_query.row_count",)

        def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                      execution_engine: Any = None) -> dict:
            n = metrics["unexpected_rows_query.row_count"]
            return {"success": n == 0, "result": {"observed_value": n}}

    return ExpectNoRowsFromQuery


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

        _register_count_only_expectation()
        self.gx = gx
        root = Path(home) / "gx"
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_or_update_postgres(
            "warehouse", connection_string=sqlalchemy_url
        )

    def validate(self, entity: str, schema: str, table: str, suite_json: dict[str, Any],
                 on: str = TYPED, parameters: dict[str, Any] | None = None
                 ) -> ValidationOutcome:
        """Run the ``on`` part of an entity's suite on ``schema.table``."""
        if parameters:
            suite_json = configure_suite(suite_json, entity, parameters)
        with self._exclusive():
            try:
                return self._validate(entity, schema, table, suite_json, on, parameters or {})
            finally:
                # Hold no idle sessions between validations: a runner cached for the
                # process would otherwise keep connections that block DROP/TEMPLATE.
                self.datasource.get_engine().dispose()

    def _validate(self, entity: str, schema: str, table: str, suite_json: dict[str, Any],
                  on: str, parameters: dict[str, Any]) -> ValidationOutcome:
        gx = self.gx
        name = entity if on == TYPED else f"{entity}_{on}"
        if name in [a.name for a in self.datasource.assets]:
            self.datasource.delete_asset(name)
        asset = self.datasource.add_table_asset(name, table_name=table, schema_name=schema)
        batch_def = asset.add_batch_definition_whole_table("staged")
        expectations = [
            # Domain objects: add_expectation_configuration merges row-SQL rules into one.
            gx.expectations.expectation_configuration.ExpectationConfiguration(
                type=exp["type"], kwargs=exp["kwargs"], meta=exp.get("meta"),
                description=exp.get("description"),
            ).to_domain_obj()
            for exp in suite_json["expectations"]
            if (exp.get("meta") or {}).get("on", TYPED) == on
        ]
        # Built whole and stored once: adding to a stored suite rewrites it per expectation.
        suite = self.context.suites.add_or_update(gx.ExpectationSuite(
            name=suite_json["name"] + ("" if on == TYPED else f"_{on}"),
            expectations=expectations, meta=suite_json.get("meta", {})))
        vd = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}_staged", data=batch_def, suite=suite)
        )
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"cxloop_{name}",
            validation_definitions=[vd],
            # Data Docs are built once per run (build_docs), not per validation.
            actions=[],
            # Counts only: GX bundles the column rules' counts into one scan, and
            # quarantine selects the bad rows itself.
            result_format={"result_format": "BASIC", "partial_unexpected_count": 0},
        ))
        result = checkpoint.run(expectation_parameters=parameters)
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
                    outcome.failed_queries[rule] = meta["bad_rows"]
                    outcome.shows[rule] = list(meta.get("shows") or [])
                    res = r.result or {}
                    outcome.observed[rule] = int(res.get("unexpected_count",
                                                         res.get("observed_value")) or 0)
                else:
                    outcome.batch_failures.append(
                        f"{rule}: observed {r.result.get('observed_value')}"
                    )
        return outcome

    def build_docs(self, since: datetime | None = None) -> str | None:
        """Build the Data Docs pages of the validations run ``since`` (all if None), the
        suites' pages and the index; returns the site's path. Only new pages: a full
        rebuild would grow with every night of history."""
        with self._exclusive():
            ids: list[Any] | None = None
            if since is not None:
                ids = [k for k in self.context.validation_results_store.list_keys()
                       if k.run_id.run_time and k.run_id.run_time >= since]
                ids += list(self.context.expectations_store.list_keys())
            self.context.build_data_docs(resource_identifiers=ids)
        return self.docs_path()

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
