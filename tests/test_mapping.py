"""Column mapping: a company's own export loads into the contract, against real Postgres and GX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from flows import load, replay
from flows.config import Domain, load_settings
from flows.entities import ENTITIES
from flows.errors import ConfigError
from flows.extract import find_batches, read_header
from flows.mapping import needs_rewrite
from flows.validate import GxRunner

ROOT = Path(__file__).resolve().parent.parent
D = date(2026, 8, 3)

# An airline-like CRM: its own headers, Yes/No, dd/mm/yyyy, two columns the contract lacks.
CRM_HEADER = ("Cust ID,Name,E-mail,Phone,Area,Customer Type,Opt In,Signup,Changed,"
              "Class,Age Band")
CRM_ROWS = [
    "k1,Ann,ann@example.com,,North,Loyal Customer,Yes,31/01/2025,02/08/2026 09:30,Business,30-39",
    "k2,Bo,bo@example.com,555,South,disloyal Customer,No,05/12/2024,02/08/2026 10:00,Eco,",
    "k3,Cy,cy@example.com,,East,VIP,Yes,01/02/2025,02/08/2026 11:00,Eco,40-49",  # unmapped
    "k4,Di,di@example.com,,West,Loyal Customer,No,2025-02-01,02/08/2026 12:00,Eco,50-59",  # date
]
CRM_MAPPING = """
sources:
  crm:
    mapping:
      customers:
        rename:
          Cust ID: customer_id
          Name: full_name
          E-mail: email
          Phone: phone
          Area: region
          Customer Type: segment
          Opt In: marketing_consent
          Signup: signup_date
          Changed: updated_at
          Age Band: attributes.age_band
        constants: {plan: basic, acquisition_channel: null}
        values:
          segment: {Loyal Customer: consumer, disloyal Customer: smb}
          region: {North: north, South: south, East: east, West: west}
          marketing_consent: {"Yes": true, "No": false}
        formats: {signup_date: "%d/%m/%Y", updated_at: "%d/%m/%Y %H:%M"}
  survey:
    mapping:
      responses:
        rename: {id: response_id, inv: invitation_id, cust: customer_id, sent: invited_at,
                 answered: responded_at, Satisfaction: csat, Ease: ces, Overall: overall_satisfaction}
        constants: {survey_type: relationship, touchpoint_code: null, nps: null,
                    likelihood_to_renew: null, comment: null, comment_language: null}
        values: {csat: {satisfied: 5, neutral or dissatisfied: 1}}
        not_applicable: {ces: [0], overall_satisfaction: [0]}
"""
SURVEY = ["id,inv,cust,sent,answered,Satisfaction,Ease,Overall,Flight Distance",
          "r1,v1,k1,2026-08-01 10:00:00,2026-08-02 10:00:00,satisfied,0,9,460",
          "r2,v2,k2,2026-08-01 10:00:00,2026-08-02 11:00:00,neutral or dissatisfied,3,0,235"]


def _write(landing: Path, entity: str, lines: list[str], name: str | None = None,
           day: date = D) -> Path:
    e = ENTITIES[entity]
    folder = landing / e.source / entity / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{entity}.csv")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cxloop.yml"
    path.write_text(text)
    return path


def _ingest(wh, tmp_path: Path, config: Path | None):
    settings = load_settings(config, landing=str(tmp_path / "landing"), home=str(tmp_path))
    load.refresh_reference(wh, settings)
    gx = GxRunner(tmp_path, wh.sqlalchemy_url())
    batches = list(find_batches(settings, [D]))
    results = {}
    for name in ENTITIES:
        mine = [b for b in batches if b.entity == name]
        if mine:
            for r in load.ingest_entity(wh, gx, name, mine, "test-run"):
                results[Path(r.source_file).name] = r
    return settings, results


def _rows(wh, query: str, params: tuple = ()) -> list[tuple]:
    with wh.transaction() as cur:
        cur.execute(query, params)
        return cur.fetchall()


@pytest.mark.integration
def test_an_export_with_its_own_headers_loads_with_values_dates_and_attributes(warehouse,
                                                                              tmp_path):
    _write(tmp_path / "landing", "customers", [CRM_HEADER, *CRM_ROWS])
    _write(tmp_path / "landing", "responses", SURVEY)
    settings, results = _ingest(warehouse, tmp_path, _config(tmp_path, CRM_MAPPING))
    crm = results["customers.csv"]
    assert (crm.status, crm.rows_in, crm.rows_loaded, crm.rows_quarantined) == (
        "loaded", 4, 2, 2), crm.error
    got = _rows(warehouse, "select customer_id, full_name, region, segment, plan, "
                "acquisition_channel, marketing_consent, signup_date, updated_at, attributes "
                "from raw.customers order by 1")
    assert got == [
        ("k1", "Ann", "north", "consumer", "basic", None, True, date(2025, 1, 31),
         datetime(2026, 8, 2, 9, 30, tzinfo=UTC), {"Class": "Business", "age_band": "30-39"}),
        ("k2", "Bo", "south", "smb", "basic", None, False, date(2024, 12, 5),
         datetime(2026, 8, 2, 10, 0, tzinfo=UTC), {"Class": "Eco", "age_band": None}),
    ]
    # Unmapped value and unparseable date: quarantined, named, the rest loaded.
    bad = dict((n, (f, r, v)) for n, f, r, v in _rows(
        warehouse, "select _row_number, failed_expectations, reasons, raw_values "
        "from quarantine.customers order by 1"))
    rules, reason, values = bad[3]
    # ...and, left as delivered, it is not one of the configured segments either.
    assert rules == ["mapping.values.segment", "segment_allowed"]
    segments = ", ".join(Domain().categories["customers.segment"])
    assert reason == ("value 'VIP' of column segment is not in mapping.values "
                      "(add it to sources.crm.mapping.customers.values.segment); "
                      f"segment must be one of {segments}")
    assert values["segment"] == "VIP" and json.loads(values["attributes"])["Class"] == "Eco"
    rules, reason, values = bad[4]
    assert "mapping.formats.signup_date" in rules
    assert "value '2025-02-01' of column signup_date does not match '%d/%m/%Y'" in reason
    assert values["signup_date"] == "2025-02-01"
    # 0 means "not applicable" on the survey's scales: null, not an out-of-range 0.
    survey = results["responses.csv"]
    assert (survey.rows_loaded, survey.rows_quarantined) == (2, 0), survey.error
    assert _rows(warehouse, "select response_id, csat, ces, overall_satisfaction, survey_type, "
                 "attributes from raw.responses order by 1") == [
        ("r1", 5, None, 9, "relationship", {"Flight Distance": "460"}),
        ("r2", 1, 3, None, "relationship", {"Flight Distance": "235"}),
    ]
    # A replay (the suite knows no mapping) leaves the untranslated rows where they are.
    assert replay.replay_quarantine(warehouse, GxRunner(tmp_path, warehouse.sqlalchemy_url()),
                                  crm.batch_id) == (0, 2)
    assert _rows(warehouse, "select count(*) from quarantine.customers") == [(2,)]
    # dbt carries the attributes to the customer dimension (jsonb, contract enforced), and
    # the models' own tests (unit tests of the history included) still pass.
    from flows.transform import run_dbt

    outcome = run_dbt(warehouse, settings, ["build", "--select", "+dim_customers",
                                            "--indirect-selection", "cautious"], D)
    assert outcome.success, outcome.failures
    assert _rows(warehouse, "select customer_id, attributes ->> 'Class', "
                 "attributes ->> 'age_band', pg_typeof(attributes)::text "
                 "from marts.dim_customers where is_current order by 1") == [
        ("k1", "Business", "30-39", "jsonb"), ("k2", "Eco", None, "jsonb")]


@pytest.mark.integration
def test_a_contract_shaped_file_is_copied_as_delivered(warehouse, tmp_path):
    header = ENTITIES["orders"].column_names
    _write(tmp_path / "landing", "orders", [",".join(header), "o1,c1,2026-08-03,19.90"])
    cfg = _config(tmp_path, CRM_MAPPING)  # mappings elsewhere do not touch orders
    settings = load_settings(cfg, landing=str(tmp_path / "landing"), home=str(tmp_path))
    [b] = [b for b in find_batches(settings, [D]) if b.entity == "orders"]
    assert b.mapping is None and not needs_rewrite(b, read_header(b), ENTITIES["orders"])
    _, results = _ingest(warehouse, tmp_path, cfg)
    assert results["orders.csv"].rows_loaded == 1
    assert _rows(warehouse, "select order_id, amount::text, attributes from raw.orders") == [
        ("o1", "19.90", None)]


@pytest.mark.integration
def test_extra_columns_without_a_mapping_are_kept_as_attributes(warehouse, tmp_path):
    header = ENTITIES["orders"].column_names
    _write(tmp_path / "landing", "orders", [",".join([*header, "store", "note"]),
                                            'o1,c1,2026-08-03,19.90,Leeds,"say ""hi"", \\ ok"',
                                            "o2,c1,2026-08-03,5.00,,",
                                            "o3,c1,2026-08-03,abc,York,"])  # text-staged
    _, results = _ingest(warehouse, tmp_path, None)
    r = results["orders.csv"]
    assert (r.status, r.rows_loaded, r.rows_quarantined) == ("loaded", 2, 1)
    assert _rows(warehouse, "select order_id, attributes from raw.orders order by 1") == [
        ("o1", {"store": "Leeds", "note": 'say "hi", \\ ok'}),
        ("o2", {"store": None, "note": None})]
    [(rules, values)] = _rows(warehouse, "select failed_expectations, raw_values "
                              "from quarantine.orders")
    assert rules == ["amount_is_numeric"]
    assert json.loads(values["attributes"]) == {"store": "York", "note": None}


@pytest.mark.integration
def test_a_mapped_column_absent_from_a_file_rejects_that_file_only(warehouse, tmp_path):
    landing = tmp_path / "landing"
    no_class = [CRM_HEADER.replace(",Age Band", ""), *[r.rsplit(",", 1)[0] for r in CRM_ROWS]]
    bad = _write(landing, "customers", no_class, "a_without_age_band.csv")
    _write(landing, "customers", [CRM_HEADER, *CRM_ROWS[:2]], "b_good.csv")
    _, results = _ingest(warehouse, tmp_path, _config(tmp_path, CRM_MAPPING))
    rejected = results[bad.name]
    assert rejected.status == "rejected"
    assert str(bad) in rejected.error
    assert "'Age Band' named in sources.crm.mapping.customers" in rejected.error
    assert results["b_good.csv"].rows_loaded == 2


@pytest.mark.parametrize(("mapping", "expected"), [
    ("customers: {renam: {a: customer_id}}",
     "sources.crm.mapping.customers.renam: unknown key"),
    ("customers: {rename: {Type: segmnt}}",
     "sources.crm.mapping.customers.rename.Type: 'segmnt' is not a column of customers"),
    ("customers: {rename: {A: segment, B: segment}}",
     "sources.crm.mapping.customers.rename: 'A' and 'B' both rename to 'segment'"),
    ("custmers: {rename: {A: segment}}",
     "sources.crm.mapping.custmers: unknown entity 'custmers'"),
    ("responses: {constants: {survey_type: relationship}}",
     "sources.crm.mapping.responses: responses files come from source 'survey', not 'crm'"),
    ("customers: {values: {marketing_consent: {Yes: true}}}",
     "marketing_consent: value True is a YAML boolean"),
    ("customers: {values: {marketing_consent: {'Y': maybe}}}",
     "values.marketing_consent.Y: 'maybe' is not a valid boolean"),
    ("customers: {formats: {region: '%d/%m/%Y'}}",
     "sources.crm.mapping.customers.formats.region: region is a text column"),
    ("customers: {constants: {segment: smb}, rename: {Type: segment}}",
     "constants.segment: 'segment' also comes from column 'Type'"),
])
def test_bad_mapping_configuration_names_file_key_and_value(tmp_path, mapping, expected):
    cfg = _config(tmp_path, "sources:\n  crm:\n    mapping:\n      " + mapping + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert str(cfg) in str(err.value) and expected in str(err.value), str(err.value)


def test_bad_mapping_exits_2_before_anything_is_loaded(tmp_path):
    cfg = _config(tmp_path, "sources:\n  crm:\n    mapping:\n      customers:\n"
                  "        rename: {Type: segmnt}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CXLOOP_HOME": str(tmp_path / "home")}
    p = subprocess.run([sys.executable, "-m", "flows", "run", "--config", str(cfg),
                        "--landing", str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "segmnt" in p.stderr + p.stdout and not (tmp_path / "home" / "pgdata").exists()


def _rewritten(batch) -> list[dict]:
    import csv

    from flows.mapping import rewrite

    done = rewrite(batch, read_header(batch), ENTITIES[batch.entity])
    try:
        with open(done.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    finally:
        done.cleanup()


def test_parquet_and_gzip_gb18030_exports_are_rewritten_alike(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.extract import Batch
    from flows.mapping import EntityMapping

    m = EntityMapping.model_validate({"rename": {"No.": "order_id", "Kunde": "customer_id",
                                                 "Datum": "order_date", "Betrag": "amount"},
                                      "formats": {"order_date": "%d.%m.%Y"}})
    pq.write_table(pa.table({"No.": ["o1"], "Kunde": ["c1"], "Datum": ["03.08.2026"],
                             "Betrag": [19.9], "Filiale": ["北京"]}), tmp_path / "o.parquet")
    gz = tmp_path / "o.csv.gz"
    gz.write_bytes(gzip.compress("No.;Kunde;Datum;Betrag;Filiale\no1;c1;03.08.2026;19.9;北京\n"
                                 .encode("gb18030")))
    expected = [{"order_id": "o1", "customer_id": "c1", "order_date": "2026-08-03",
                 "amount": "19.9", "attributes": '{"Filiale":"北京"}'}]
    assert _rewritten(Batch("crm", "orders", D, tmp_path / "o.parquet", "h", mapping=m)) == expected
    assert _rewritten(Batch("crm", "orders", D, gz, "h", "gb18030", ";", mapping=m)) == expected


def test_a_malformed_export_is_rejected_with_file_and_problem(tmp_path):
    from flows.extract import Batch, StructuralError
    from flows.mapping import EntityMapping

    path = tmp_path / "o.csv"
    path.write_text("No.,Kunde,Datum,Betrag\no1,c1,2026-08-03,1\no2,c1\n")
    m = EntityMapping.model_validate({"rename": {"No.": "order_id", "Kunde": "customer_id",
                                                 "Datum": "order_date", "Betrag": "amount"}})
    import tempfile

    left = set(Path(tempfile.gettempdir()).glob("cxloop-mapping-*"))
    with pytest.raises(StructuralError) as err:
        _rewritten(Batch("crm", "orders", D, path, "h", mapping=m))
    assert str(path) in str(err.value) and "malformed" in str(err.value)
    assert set(Path(tempfile.gettempdir()).glob("cxloop-mapping-*")) == left  # cleaned up


def test_the_readme_worked_example_reads_its_own_export(tmp_path):
    """The README's "Column mapping" example: its configuration loads and maps its file."""
    from flows.extract import Batch

    text = (ROOT / "README.md").read_text().split("## Column mapping", 1)[1]
    export = text.split("```text\n", 1)[1].split("```", 1)[0]
    config = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = load_settings(_config(tmp_path, config))
    path = tmp_path / "customers.csv"
    path.write_text(export.replace("...", "1 Main St"))
    src = settings.sources["crm"]
    [row] = _rewritten(Batch("crm", "customers", D, path, "h", src.encoding, src.delimiter,
                             mapping=src.mapping["customers"]))
    assert (row["customer_id"], row["segment"], row["marketing_consent"], row["signup_date"],
            row["plan"]) == ("A-1001", "loyal", "true", "2025-01-31", "standard")
    assert json.loads(row["attributes"]) == {"cabin_class": "Business", "Age": "30-39"}


@pytest.mark.integration
def test_a_sql_source_maps_its_query_columns(warehouse, tmp_path, monkeypatch):
    with warehouse.transaction() as cur:
        cur.execute("create schema src; create table src.bestellung (nr text, kunde text, "
                    "datum date, betrag numeric, filiale text)")
        cur.execute("insert into src.bestellung values ('o1', 'c1', '2026-08-03', 10, 'Köln')")
    monkeypatch.setenv("ERP_URL", warehouse.url)
    cfg = _config(tmp_path, (
        "sources:\n  erp:\n    kind: sql\n    url_env: ERP_URL\n    queries:\n"
        "      orders: select * from src.bestellung where datum >= %(start)s and datum < %(end)s\n"
        "    mapping:\n      orders:\n"
        "        rename: {nr: order_id, kunde: customer_id, datum: order_date, betrag: amount}\n"))
    _, results = _ingest(warehouse, tmp_path, cfg)
    [r] = results.values()
    assert (r.status, r.rows_loaded) == ("loaded", 1), r.error
    assert _rows(warehouse, "select order_id, order_date, attributes from raw.orders") == [
        ("o1", D, {"filiale": "Köln"})]


@pytest.mark.integration
def test_fixing_the_mapping_reloads_the_file_and_supersedes_the_batch(warehouse, tmp_path):
    _write(tmp_path / "landing", "customers", [CRM_HEADER, *CRM_ROWS[:3]])
    _, first = _ingest(warehouse, tmp_path, _config(tmp_path, CRM_MAPPING))
    assert first["customers.csv"].rows_quarantined == 1  # VIP
    fixed = CRM_MAPPING.replace("disloyal Customer: smb}", "disloyal Customer: smb, VIP: enterprise}")
    _, second = _ingest(warehouse, tmp_path, _config(tmp_path, fixed))
    again = second["customers.csv"]
    assert again.batch_id != first["customers.csv"].batch_id
    assert (again.status, again.rows_loaded, again.rows_quarantined) == ("loaded", 3, 0)
    assert _rows(warehouse, "select status from ops.load_batches order by started_at") == [
        ("superseded",), ("loaded",)]
    assert _rows(warehouse, "select segment from raw.customers where customer_id = 'k3'") == [
        ("enterprise",)]
