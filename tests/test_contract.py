"""The extract contract, the committed GX suites and the Prefect entrypoints agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from flows.entities import ENTITIES
from flows.validate import SUITES_DIR, entity_rules, suite_dict

ROOT = Path(__file__).resolve().parent.parent


def test_committed_suites_match_the_contract():
    for name, e in ENTITIES.items():
        committed = json.loads((SUITES_DIR / f"{name}.json").read_text())
        assert committed == json.loads(json.dumps(suite_dict(e))), (
            f"expectations/{name}.json is stale: run `python -m flows.validate`")


def test_every_entity_has_key_null_and_range_rules():
    for e in ENTITIES.values():
        names = {r.name for r in entity_rules(e)}
        for k in e.key:
            assert f"{k}_not_null" in names
        assert "key_unique_in_batch" in names
    names = {r.name for r in entity_rules(ENTITIES["responses"])}
    assert {"nps_in_range", "csat_in_range", "ces_in_range",
            "responded_not_before_invited"} <= names
    assert "email_format" in {r.name for r in entity_rules(ENTITIES["customers"])}


def test_every_prefect_entrypoint_imports_and_is_a_flow():
    from prefect import Flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} >= {"nightly", "backfill"}
    for d in spec["deployments"]:
        path, func = d["entrypoint"].split(":")
        mod_spec = importlib.util.spec_from_file_location("entry_" + d["name"], ROOT / path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        flow = getattr(module, func)
        assert isinstance(flow, Flow), d["entrypoint"]
        params = set(flow.parameters.properties)
        assert set(d.get("parameters") or {}) <= params, d["name"]
