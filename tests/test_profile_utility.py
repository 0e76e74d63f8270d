"""Tests of the "utility" demo profile generator (flows/demo_profiles/).

The profile exists to check cxloop on exports that do not look like the contract, so these
tests check its promises without the pipeline: same seed, same bytes; headers that really
differ from the contract; a configuration (read back from the YAML it wrote, not from the
generator's constants) that maps every file onto the contract with every value inside the
configured domain and scales; exactly the planted faults outside it; and the planted
structure recoverable by a plain analysis of the files - the two top drivers of the yes/no
goal, the one negative driver, the churn model.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows import demo
from flows.demo_profiles import PROFILES, profile
from flows.demo_profiles import utility_params as P
from flows.demo_profiles.utility import draw_traits
from flows.drivers import relative_weights
from flows.entities import ENTITIES
from flows.errors import CxloopError

START = date(2026, 7, 1)
SEEDS = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds"


def hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def extract_files(out: Path) -> list[tuple[str, Path]]:
    return [(name, f) for name, e in ENTITIES.items()
            for f in sorted((out / e.source / name).glob("*/*.csv"))]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("utility") / "landing"
    profile("utility").generate(out, customers=800, days=60, start=START, seed=7)
    return out


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("utility_faulty") / "landing"
    profile("utility").generate(out, customers=400, days=30, start=START, seed=5, faults=0.02)
    return out


def config_of(out: Path) -> dict:
    return yaml.safe_load((out / "_config" / "cxloop.yml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------
# An independent reading of the configuration: what the column mapping must do
# --------------------------------------------------------------------------------------
def map_rows(entity: str, header: list[str], rows: list[list[str]],
             cfg: dict) -> tuple[list[dict], dict[int, set[str]], int]:
    """Rows in contract form, problems per 1-based row, and the not-applicable count."""
    e = ENTITIES[entity]
    m = cfg["sources"][e.source]["mapping"][entity]
    rename = m.get("rename", {})
    names = [rename.get(h, h) for h in header]
    dom = cfg["domain"]
    cats = {k.split(".", 1)[1]: v for k, v in dom["categories"].items()
            if k.startswith(entity + ".")}
    scales = {k.split(".", 1)[1]: v for k, v in dom["scales"].items()
              if k.startswith(entity + ".")}
    na = {c: {str(x) for x in v} for c, v in m.get("not_applicable", {}).items()}
    out, problems, n_na = [], {}, 0
    for n, row in enumerate(rows, start=1):
        rec = dict(zip(names, row, strict=True))
        bad: set[str] = set()
        for col, vmap in m.get("values", {}).items():
            if rec[col] != "":
                assert rec[col] in vmap, (entity, col, rec[col], "value map leaves it unmapped")
                rec[col] = vmap[rec[col]]
        for col, fmt in m.get("formats", {}).items():
            if rec[col] != "":
                rec[col] = datetime.strptime(rec[col], fmt).isoformat(" ")
        not_applicable = any(rec[c] in vals for c, vals in na.items())
        for c, vals in na.items():
            if rec[c] in vals:
                rec[c] = ""
        for c in e.columns:
            if c.name not in rec and c.name in e.optional_columns:
                continue  # left out of the export: loads as null
            v = rec[c.name]
            if v == "":
                if c.required and not not_applicable:
                    bad.add("null_key" if c.name in e.key else "null_required")
                continue
            if c.pg_type == "boolean":
                assert v in ("true", "false"), (entity, c.name, v)
            if c.name in cats and v not in cats[c.name]:
                bad.add("unknown_category")
            if c.name in scales and not scales[c.name][0] <= int(v) <= scales[c.name][1]:
                bad.add("out_of_range")
        if entity == "item_ratings":
            assert rec["dimension"] in dom["experience_dimensions"]
        n_na += not_applicable
        if bad:
            problems[n] = bad
        out.append(rec)
    return out, problems, n_na


# --------------------------------------------------------------------------------------
# Registry, determinism, headers
# --------------------------------------------------------------------------------------
def test_registry_default_profile_is_todays_generator(tmp_path: Path) -> None:
    assert set(PROFILES) >= {"demo", "utility"}
    a, b = tmp_path / "a", tmp_path / "b"
    profile("demo").generate(a, customers=150, days=4, start=START, seed=3)
    demo.generate(b, customers=150, days=4, start=START, seed=3)
    assert hashes(a) == hashes(b)
    with pytest.raises(CxloopError, match="known: demo, utility"):
        profile("airline")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    gen = profile("utility").generate
    gen(tmp_path / "a", customers=200, days=6, start=START, seed=1, faults=0.01)
    gen(tmp_path / "b", customers=200, days=6, start=START, seed=1, faults=0.01)
    gen(tmp_path / "c", customers=200, days=6, start=START, seed=2, faults=0.01)
    ha, hb, hc = hashes(tmp_path / "a"), hashes(tmp_path / "b"), hashes(tmp_path / "c")
    assert ha == hb
    data = [k for k in ha if not k.startswith("_config/")]
    assert sum(ha[k] != hc.get(k) for k in data) > len(data) // 2


def test_headers_differ_from_the_contract_and_the_mapping_restores_it(clean: Path) -> None:
    cfg = config_of(clean)
    files = extract_files(clean)
    assert {e for e, _ in files} == set(ENTITIES)
    for entity, f in files:
        header, _ = read_csv(f)
        e = ENTITIES[entity]
        contract = [c for c in e.column_names if c not in e.optional_columns]  # profile omits
        assert not set(header) & set(contract) - set(P.EXTRA_COLUMNS.get(entity, ())), (
            entity, "a header equals a contract column: the mapping would not be exercised")
        rename = cfg["sources"][ENTITIES[entity].source]["mapping"][entity]["rename"]
        mapped = [rename.get(h, h) for h in header]
        assert mapped[: len(contract)] == contract, entity
        assert tuple(mapped[len(contract):]) == P.EXTRA_COLUMNS.get(entity, ()), entity


# --------------------------------------------------------------------------------------
# The configuration describes the files
# --------------------------------------------------------------------------------------
def test_clean_files_map_onto_the_contract_inside_the_configured_domain(clean: Path) -> None:
    cfg = config_of(clean)
    n_na = 0
    seen: dict[str, set[str]] = {"segment": set(), "plan": set(), "region": set()}
    for entity, f in extract_files(clean):
        header, rows = read_csv(f)
        recs, problems, na = map_rows(entity, header, rows, cfg)
        assert not problems, (f, problems)
        n_na += na
        if entity == "customers":
            for c in seen:
                seen[c] |= {r[c] for r in recs}
    assert n_na > 0, "no item answered 'not applicable': the mapping's n/a rule is untested"
    truth = json.loads((clean / "_truth" / "truth.json").read_text())
    # every configured value occurs: nothing folded, nothing unused
    assert seen["segment"] == set(truth["domain"]["segments"])
    assert seen["plan"] == set(truth["domain"]["plans"])
    assert seen["region"] == set(truth["domain"]["regions"])


def test_faults_are_exactly_the_manifest(faulty: Path) -> None:
    cfg = config_of(faulty)
    with open(faulty / "_faults" / "manifest.csv", newline="", encoding="utf-8") as f:
        manifest = list(csv.DictReader(f))
    kinds = {m["kind"] for m in manifest}
    assert {"unknown_category", "out_of_range"} <= kinds <= {"unknown_category", "out_of_range",
                                                            "null_key"}
    listed = {(m["file"], int(m["row"])): m["kind"] for m in manifest}
    found = {}
    for entity, f in extract_files(faulty):
        header, rows = read_csv(f)
        _, problems, _ = map_rows(entity, header, rows, cfg)
        rel = f.relative_to(faulty).as_posix()
        found |= {(rel, n): kinds for n, kinds in problems.items()}
    assert set(found) == set(listed)
    assert all(listed[k] in found[k] for k in listed)


def test_reference_files_match_the_seed_format_and_the_domain(clean: Path) -> None:
    d, cfg = clean / "_config", config_of(clean)
    tables = {}
    for name in ("touchpoint_catalogue", "survey_items", "owner_routing"):
        assert cfg["reference"][name] == f"{name}.csv"
        header, rows = read_csv(d / f"{name}.csv")
        seed_header, seed_rows = read_csv(SEEDS / f"{name}.csv")
        assert header == seed_header, name
        tables[name] = [dict(zip(header, r, strict=True)) for r in rows]
    cat = {r["touchpoint_code"]: r for r in tables["touchpoint_catalogue"]}
    demo_kpis = {r[8] for r in read_csv(SEEDS / "touchpoint_catalogue.csv")[1]}
    dims, chans = cfg["domain"]["experience_dimensions"], cfg["domain"]["categories"][
        "interactions.channel"]
    demo_codes = {r[0] for r in read_csv(SEEDS / "touchpoint_catalogue.csv")[1]}
    assert len(set(cat) & demo_codes) <= 1, "mostly the demo's touchpoints: not another shape"
    assert {r["item_code"] for r in tables["survey_items"]}.isdisjoint(
        r[0] for r in read_csv(SEEDS / "survey_items.csv")[1])
    for r in cat.values():
        assert r["default_channel"] in chans and r["experience_dimension"] in dims
        assert r["kpi_name"] in demo_kpis
    for r in tables["survey_items"]:
        assert r["touchpoint_code"] in cat and r["experience_dimension"] in dims
    segs = cfg["domain"]["categories"]["customers.segment"]
    regions = cfg["domain"]["categories"]["customers.region"]
    for r in tables["owner_routing"]:
        assert r["touchpoint_code"] in {*cat, "customer", "*"}
        assert r["segment"] in {*segs, "*"} and r["region"] in {*regions, "*"}
    assert sum(r["is_fallback"] == "true" for r in tables["owner_routing"]) == 1


# --------------------------------------------------------------------------------------
# The planted truth is in the files
# --------------------------------------------------------------------------------------
def _pulse_frame(out: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Wide item scores (n/a = missing) and the yes/no goal of every pulse response."""
    def read(entity: str) -> pd.DataFrame:
        return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)
                          for e, f in extract_files(out) if e == entity])

    resp = read("responses").drop_duplicates("Response ID")
    pulse = resp[resp["Survey"] == "Pulse"].set_index("Response ID")
    y = (pulse["Satisfied?"] == "Yes").astype(float)
    items = read("item_ratings")
    items = items[items["Response ID"].isin(y.index)].copy()
    items["score"] = items["Score (0-10)"].astype(int).replace(0, np.nan)
    wide = items.pivot_table(index="Response ID", columns="Question", values="score",
                             aggfunc="mean").reindex(y.index)
    return wide, y


def test_planted_drivers_and_the_negative_one_in_a_plain_regression(clean: Path) -> None:
    wide, y = _pulse_frame(clean)
    assert len(y) > 300 and 0.3 < y.mean() < 0.85
    # OLS of satisfied (0/1) on the items, missing -> item mean plus a missing indicator
    x = pd.concat([wide.fillna(wide.mean()), wide.isna().astype(float).add_suffix("_na")],
                  axis=1)
    x.insert(0, "const", 1.0)
    beta, *_ = np.linalg.lstsq(x.values, y.values, rcond=None)
    resid = y.values - x.values @ beta
    cov = resid @ resid / (len(y) - x.shape[1]) * np.linalg.pinv(x.values.T @ x.values)
    t = pd.Series(beta / np.sqrt(np.diag(cov)), index=x.columns)
    b = pd.Series(beta, index=x.columns)[list(wide.columns)]
    assert t[P.NEGATIVE_DRIVER] < -2.5, t
    assert (b.drop(P.NEGATIVE_DRIVER) > b[P.NEGATIVE_DRIVER]).all()
    assert set(b.nlargest(2).index) == set(P.TOP_DRIVERS), b
    # what the pipeline's driver step computes: the same two on top, the negative signed
    raw, std_beta, r2 = relative_weights(wide, y)
    share = pd.Series(raw / r2, index=wide.columns)
    assert set(share.nlargest(2).index) == set(P.TOP_DRIVERS), share
    assert pd.Series(std_beta, index=wide.columns)[P.NEGATIVE_DRIVER] < 0


def test_small_business_rates_worse(clean: Path) -> None:
    cfg = config_of(clean)
    seg_of = {}
    for e, f in extract_files(clean):
        if e == "customers":
            header, rows = read_csv(f)
            seg_of |= {r["customer_id"]: r["segment"] for r in map_rows(e, header, rows, cfg)[0]}
    wide, _ = _pulse_frame(clean)
    items = pd.concat([pd.read_csv(f, dtype=str) for e, f in extract_files(clean)
                       if e == "item_ratings"])
    items["score"] = items["Score (0-10)"].astype(int).replace(0, np.nan)
    items["segment"] = items["Account Number"].map(seg_of)
    means = items.groupby("segment")["score"].mean()
    assert means["small_business"] < means["residential"] - 0.4, means


def test_truth_files_agree_with_the_extracts(clean: Path) -> None:
    truth = json.loads((clean / "_truth" / "truth.json").read_text())
    cust = pd.read_parquet(clean / "_truth" / "customers.parquet")
    assert len(cust) == truth["customers"]["total"]
    assert truth["drivers"]["negative_driver"] == P.NEGATIVE_DRIVER
    assert truth["drivers"]["items"][P.NEGATIVE_DRIVER]["effect_sign"] == "negative"
    assert sorted(truth["drivers"]["top_drivers"]) == sorted(P.TOP_DRIVERS)
    closed = set()
    for e, f in extract_files(clean):
        if e == "subscriptions":
            header, rows = read_csv(f)
            i, s = header.index("Account Number"), header.index("Agreement Status")
            closed |= {r[i] for r in rows if r[s] == "Closed"}
    assert closed == set(cust.loc[cust["event"] == 1, "customer_id"])
    risk = cust["risk_score"]
    assert np.allclose(np.log(risk), cust["linear_predictor"])
    alive = cust["event"] == 0
    assert cust.loc[alive, "p_churn_90d_after_window"].between(0, 1).all()
    assert cust.loc[~alive, "p_churn_90d_after_window"].isna().all()
    shoppers = cust[(cust["event"] == 1) & (cust["price_shopper"] == 1)]
    if len(shoppers) >= 5:
        assert (shoppers["cancel_reason"] == "price").mean() > 0.5


def test_planted_hazard_model_is_recoverable_from_the_draws() -> None:
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(0)
    tr = draw_traits(rng, 8000)
    df = pd.DataFrame({c: tr[c] for c in P.COVARIATES})
    df["T"], df["E"] = tr["t_churn"], 1
    fit = CoxPHFitter().fit(df, "T", "E")
    ci = fit.confidence_intervals_
    for c, beta in P.BETAS.items():
        lo, hi = ci.loc[c].iloc[0], ci.loc[c].iloc[1]
        assert lo - 0.02 <= beta <= hi + 0.02, (c, beta, lo, hi)


def test_cli_generates_the_profile_and_rejects_an_unknown_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["demo", "generate", "--profile", "utility", "--out",
                              str(tmp_path / "l"), "--customers", "100", "--days", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "l" / "_config" / "cxloop.yml").exists()
    res = runner.invoke(app, ["demo", "generate", "--profile", "nope", "--out",
                              str(tmp_path / "x"), "--days", "1"])
    assert res.exit_code == 2
