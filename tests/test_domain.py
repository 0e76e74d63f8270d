"""The domain lives in configuration: another company's values load, values outside its
lists are quarantined before raw with the allowed list as the reason, dbt agrees, and
reference files that disagree stop the run before anything is loaded."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from flows import load, transform
from flows.config import REPO_ROOT, Domain, load_settings
from flows.demo import generate
from flows.entities import ENTITIES
from flows.errors import ConfigError
from flows.extract import find_batches
from flows.reference import COMPUTABLE_KPIS, check_reference
from flows.validate import GxRunner

DEFAULT = load_settings(None).reference


def _write_config(folder: Path, text: str) -> Path:
    p = folder / "cxloop.yml"
    p.write_text(text)
    return p


def _copy_csv(src: Path, dst: Path, edit) -> Path:
    """Copy a reference CSV, passing each row (a dict) through ``edit`` (None drops it)."""
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for row in rows:
            row = edit(row)
            if row is not None:
                w.writerow(row)
    return dst


def test_dbt_default_vars_are_the_configuration_defaults():
    """dbt run alone uses the same domain as a run with no `domain:` section."""
    project = yaml.safe_load((REPO_ROOT / "dbt_project/dbt_project.yml").read_text())
    expected = Domain().dbt_vars()
    assert {k: project["vars"][k] for k in expected} == expected


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ("categories:\n    custmers.region: [a]", "unknown entity 'custmers'"),
        ("categories:\n    customers.regoin: [a]", "entity customers has no column 'regoin'"),
        ("categories:\n    customers.signup_date: [a]", "signup_date is date, not a text column"),
        ("categories:\n    interactions.touchpoint_code: [a]", "checked against the reference"),
        ("categories:\n    customers.segment: [yes, no]", "is a YAML boolean"),
        ("categories:\n    customers.segment: []", "non-empty list"),
        ("scales:\n    responses.nsp: [0, 10]", "entity responses has no column 'nsp'"),
        ("scales:\n    responses.nps: [10, 0]", "low 10 is above high 0"),
        ("segment_by: [email]", "'email' is not a customer column"),
        ("people_dimensions: [courage]", "'courage' is not one of domain.experience_dimensions"),
    ],
)
def test_bad_domain_keys_are_config_errors_naming_key_and_value(tmp_path, section, needle):
    cfg = _write_config(tmp_path, f"domain:\n  {section}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert needle in str(e.value)
    assert str(cfg) in str(e.value) and "domain." in str(e.value)


def test_configured_keys_replace_only_their_own_default(tmp_path):
    cfg = _write_config(tmp_path, "domain:\n  categories:\n    customers.segment: [Business, "
                                  "Economy]\n  scales:\n    item_ratings.rating: [0, 5]\n")
    d = load_settings(cfg).domain
    assert d.categories["customers.segment"] == ["Business", "Economy"]
    assert d.categories["customers.region"] == Domain().categories["customers.region"]
    assert d.scales["item_ratings.rating"] == (0, 5)
    assert d.scales["responses.nps"] == Domain().scales["responses.nps"]


def test_people_dimensions_default_to_the_demo_ones_a_company_lists(tmp_path):
    """Not given, the people dimensions are the demo's that experience_dimensions lists, so
    a company's own dimension list needs no people_dimensions key to load."""
    cfg = _write_config(tmp_path, "domain:\n  experience_dimensions: [reliability, respect, "
                                  "knowledge]\n")
    d = load_settings(cfg).domain
    assert d.people_dimensions == ["respect", "knowledge"]
    assert d.dbt_vars()["people_dimensions"] == ["respect", "knowledge"]
    assert Domain().people_dimensions == ["respect", "knowledge", "recognition"]


def test_items_of_a_touchpoint_missing_from_the_catalogue_are_a_config_error(tmp_path):
    """A custom catalogue with the demo's item list: named line by line, before loading."""
    catalogue = _copy_csv(DEFAULT.touchpoint_catalogue, tmp_path / "catalogue.csv",
                          lambda r: None if r["touchpoint_code"] == "approval" else r)
    items = list(csv.DictReader(open(DEFAULT.survey_items, encoding="utf-8")))
    line = 2 + next(i for i, r in enumerate(items) if r["touchpoint_code"] == "approval")
    cfg = _write_config(tmp_path, f"reference:\n  touchpoint_catalogue: {catalogue}\n")
    with pytest.raises(ConfigError) as e:
        check_reference(load_settings(cfg))
    msg = str(e.value)
    assert (f"{DEFAULT.survey_items}: line {line}: touchpoint_code 'approval' is not in "
            f"{catalogue}") in msg
    assert "reference.survey_items is still the demo's item list" in msg
    assert f"{DEFAULT.owner_routing}: line " in msg  # the routing names it too


def test_a_dimension_outside_experience_dimensions_is_a_config_error(tmp_path):
    dims = [d for d in Domain().experience_dimensions if d != "knowledge"]
    cfg = _write_config(tmp_path, f"domain:\n  experience_dimensions: {dims}\n")
    with pytest.raises(ConfigError) as e:
        check_reference(load_settings(cfg))
    msg = str(e.value)
    assert "experience_dimension 'knowledge' is not in cxloop.yml domain.experience_dimensions" in msg
    assert str(DEFAULT.survey_items) in msg and str(DEFAULT.touchpoint_catalogue) in msg


def test_a_kpi_the_pipeline_cannot_compute_lists_the_ones_it_can(tmp_path):
    def edit(r):
        if r["touchpoint_code"] == "approval":
            r["kpi_name"] = "on_time_departure_rate"
        return r

    catalogue = _copy_csv(DEFAULT.touchpoint_catalogue, tmp_path / "catalogue.csv", edit)
    cfg = _write_config(tmp_path, f"reference:\n  touchpoint_catalogue: {catalogue}\n")
    with pytest.raises(ConfigError) as e:
        check_reference(load_settings(cfg))
    msg = str(e.value)
    assert f"{catalogue}: line 3: kpi_name 'on_time_departure_rate' cannot be computed" in msg
    assert all(k in msg for k in COMPUTABLE_KPIS)


def test_a_kpi_direction_that_contradicts_its_benchmark_is_a_config_error(tmp_path):
    def edit(r):
        if r["touchpoint_code"] == "approval":  # wait: lower is better, benchmark < expectation
            r["kpi_higher_is_better"] = "true"
        return r

    catalogue = _copy_csv(DEFAULT.touchpoint_catalogue, tmp_path / "catalogue.csv", edit)
    cfg = _write_config(tmp_path, f"reference:\n  touchpoint_catalogue: {catalogue}\n")
    with pytest.raises(ConfigError, match="line 3: kpi_higher_is_better is true but "
                                          "kpi_benchmark 14400 is below"):
        check_reference(load_settings(cfg))


def test_the_default_reference_files_agree_with_the_default_domain():
    codes = check_reference(load_settings(None))
    assert "approval" in codes.touchpoints and codes.items


# --------------------------------------------------------------------------------------
# Another company's domain, end to end through GX and dbt
# --------------------------------------------------------------------------------------
START, DAYS = date(2026, 7, 1), 4
SEGMENTS = {"consumer": "economy", "smb": "eco_plus", "enterprise": "business"}
PLANS = {"basic": "standard", "plus": "flex", "premium": "first"}


def _rewrite(path: Path, edit) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, [edit(r) for r in reader]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.integration
def test_another_companys_segments_and_plans_load_and_outsiders_are_quarantined(
        warehouse, tmp_path):
    landing = tmp_path / "landing"
    generate(landing, customers=150, days=DAYS, start=START, seed=5)

    def company(r):
        if "segment" in r:
            r["segment"] = SEGMENTS[r["segment"]]
        if "plan" in r:
            r["plan"] = PLANS[r["plan"]]
        return r

    for entity in ("customers", "subscriptions"):
        for f in (landing / "crm" / entity).glob("*/*.csv"):
            _rewrite(f, company)
    first_day = landing / "crm" / "customers" / START.isoformat() / f"customers_{START:%Y%m%d}.csv"
    with open(first_day, "a", newline="", encoding="utf-8") as f:  # the demo's own segment
        csv.writer(f).writerow(["x-outsider", "", "", "", "north", "consumer", "standard", "web",
                                "true", START.isoformat(), f"{START} 08:00:00"])
    planted = iter([1])  # one subscription with a reason the company does not use

    def moved(r):
        if next(planted, None):
            r["cancel_reason"] = "moved"
        return r

    _rewrite(landing / "crm" / "subscriptions" / START.isoformat()
             / f"subscriptions_{START:%Y%m%d}.csv", moved)
    routing = _copy_csv(DEFAULT.owner_routing, tmp_path / "routing.csv",
                        lambda r: {**r, "segment": SEGMENTS.get(r["segment"], r["segment"])})

    def source_rows(entity: str, column: str, value: str) -> int:
        return sum(1 for f in landing.glob(f"*/{entity}/*/*.csv")
                   for r in csv.DictReader(open(f, encoding="utf-8")) if r[column] == value)

    top = max(int(r["rating"]) for f in landing.glob("survey/item_ratings/*/*.csv")
              for r in csv.DictReader(open(f, encoding="utf-8")))
    reasons = ["price", "competitor", "service", "billing", "other"]  # not "moved"
    cfg = _write_config(tmp_path, f"""\
reference:
  owner_routing: {routing}
domain:
  categories:
    customers.segment: [{', '.join(SEGMENTS.values())}]
    customers.plan: [{', '.join(PLANS.values())}]
    subscriptions.plan: [{', '.join(PLANS.values())}]
    subscriptions.cancel_reason: [{', '.join(reasons)}]
  scales:
    item_ratings.rating: [1, {top - 1}]
""")
    assert not set(SEGMENTS.values()) & set(Domain().categories["customers.segment"])
    settings = load_settings(cfg, landing=str(landing), home=str(tmp_path))
    load.refresh_reference(warehouse, settings)
    gx = GxRunner(tmp_path, warehouse.sqlalchemy_url())
    batches = list(find_batches(settings, [START + timedelta(days=i) for i in range(DAYS)]))
    for name in ENTITIES:
        load.ingest_entity(warehouse, gx, name, [b for b in batches if b.entity == name], "t")

    with warehouse.transaction() as cur:
        cur.execute("select distinct segment from raw.customers")
        assert {r[0] for r in cur.fetchall()} == set(SEGMENTS.values())
        cur.execute("select raw_values->>'customer_id', failed_expectations, reasons "
                    "from quarantine.customers")
        assert cur.fetchall() == [("x-outsider", ["segment_allowed"],
                                   "segment must be one of economy, eco_plus, business")]
        # A configured key the committed suite has no rule for gets one at run time.
        cur.execute("select count(*), min(reasons) from quarantine.subscriptions")
        n, reason = cur.fetchone()
        assert n == source_rows("subscriptions", "cancel_reason", "moved") > 0
        assert reason == f"cancel_reason must be one of {', '.join(reasons)}"
        # A configured range: the scale's bounds are suite parameters too.
        cur.execute("select count(*), min(reasons) from quarantine.item_ratings "
                    "where 'rating_in_range' = any(failed_expectations)")
        n, reason = cur.fetchone()
        assert n == source_rows("item_ratings", "rating", str(top)) > 0
        assert f"rating must be between 1 and {top - 1}" in reason
    # dbt's tests get the same lists: the build passes with the company's values.
    transform.build(warehouse, settings, START + timedelta(days=DAYS - 1),
                    exclude=transform.AFTER_PYTHON)
    with warehouse.transaction() as cur:
        cur.execute("select distinct segment from marts.dim_customers")
        assert {r[0] for r in cur.fetchall()} <= set(SEGMENTS.values())
    # ...and those tests judge by the configured lists: one the data breaks fails.
    narrower = {**settings.domain.categories, "customers.segment": ["economy"]}
    res = transform.run_dbt(warehouse, settings, ["test", "--select", "stg_crm__customers"],
                            START + timedelta(days=DAYS - 1),
                            extra_vars={"domain_categories": narrower})
    assert not res.success
    assert any("accepted_values_stg_crm__customers_segment" in f for f in res.failures)


@pytest.mark.e2e
def test_a_run_with_a_mismatched_catalogue_exits_2_before_loading(tmp_path):
    """The user's own catalogue with the demo's items: one message, exit 2, raw untouched."""
    import os
    import subprocess
    import sys

    import psycopg2

    _copy_csv(DEFAULT.touchpoint_catalogue, tmp_path / "catalogue.csv",
              lambda r: None if r["touchpoint_code"] == "approval" else r)
    day = tmp_path / "landing" / "crm" / "orders" / START.isoformat()
    day.mkdir(parents=True)
    (day / "orders.csv").write_text("order_id,customer_id,order_date,amount\n"
                                    f"o1,c1,{START},10\n")
    cfg = _write_config(tmp_path, "home: h\nlanding: landing\nreference:\n"
                                  "  touchpoint_catalogue: catalogue.csv\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CXLOOP_HOME", "CXLOOP_WAREHOUSE_URL", "CXLOOP_LANDING")}

    def cxloop(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows", *args, "--config", str(cfg)],
                              env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
                              timeout=600, cwd=REPO_ROOT.parent)

    try:
        res = cxloop("run", "--date", START.isoformat())
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.count("error:") == 1
        assert "line 3: touchpoint_code 'approval' is not in" in res.stderr
        url = cxloop("warehouse", "url").stdout.strip()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from raw.orders")
            assert cur.fetchone()[0] == 0
    finally:
        cxloop("warehouse", "stop")


def test_the_example_config_shows_the_default_domain():
    assert load_settings(REPO_ROOT / "cxloop.example.yml").domain == Domain()


def test_a_run_configures_the_committed_suite_by_parameters():
    """Messages name the configured values; a key the suite lacks gets a rule."""
    from flows.rules import configure_suite, domain_parameter
    from flows.validate import load_suite

    suite = load_suite("subscriptions")
    params = {domain_parameter("subscriptions.plan", "values"): ["gold", "silver"],
              domain_parameter("subscriptions.cancel_reason", "values"): ["price"],
              domain_parameter("customers.region", "values"): ["x"]}
    out = configure_suite(suite, "subscriptions", params)
    by_rule = {e["meta"]["rule"]: e for e in out["expectations"]}
    assert by_rule["plan_allowed"]["description"] == "plan must be one of gold, silver"
    added = by_rule["cancel_reason_allowed"]
    assert added["kwargs"]["value_set"] == {"$PARAMETER": "subscriptions__cancel_reason__values"}
    assert "region_allowed" not in by_rule  # another entity's key
    assert suite == load_suite("subscriptions")  # the committed suite is not changed
