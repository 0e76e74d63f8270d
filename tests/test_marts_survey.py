"""Survey marts against a real warehouse, real GX and real dbt, from a survey-only landing.

The demo generator's relationship survey (responses + item ratings, nothing from the CRM
and no transactional surveys) is loaded, the experience models built, and the Python
driver step run with a binary goal:

* item ratings alone give the touchpoint scorecard its rows (with a benchmark-scaled item
  score when the catalogue carries item rating levels);
* a binary goal (0/1) drives the driver computation and the quadrant, and the generator's
  planted fix-first touchpoint is still found for it;
* the goal trend reports the top-box share of every configured goal.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import drivers, load, transform
from flows.config import REPO_ROOT, load_settings
from flows.demo import generate
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
DAYS = 45
END = START + timedelta(days=DAYS - 1)


def _survey_only(demo: Path, out: Path) -> None:
    """Relationship responses and their item ratings; the binary goal goes into `nps`.

    The responses contract has no free 0/1 column, and a company's yes/no answer would
    arrive through the column mapping into whichever column its goal names; here the
    answer "satisfied" (overall satisfaction of 8 or more) is written into `nps`, whose
    0-10 range accepts 0 and 1, and the goal `satisfied` reads it as binary.
    """
    for entity in ("responses", "item_ratings"):
        for f in sorted((demo / "survey" / entity).glob("*/*.csv")):
            target = out / "survey" / entity / f.parent.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(f, newline="", encoding="utf-8") as src:
                rows = list(csv.DictReader(src))
            if entity == "responses":
                rows = [r for r in rows if r["survey_type"] == "relationship"]
                for r in rows:
                    r["nps"] = "" if r["overall_satisfaction"] == "" else \
                        str(int(int(r["overall_satisfaction"]) >= 8))
            with open(target, "w", newline="", encoding="utf-8") as dst:
                w = csv.DictWriter(dst, fieldnames=ENTITIES[entity].column_names)
                w.writeheader()
                w.writerows(rows)


def _catalogue_with_item_levels(path: Path) -> Path:
    """The demo catalogue plus the optional item rating levels (expectation 3, benchmark 4.5)."""
    src = REPO_ROOT / "dbt_project/seeds/touchpoint_catalogue.csv"
    with open(src, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "item_rating_expectation",
                                           "item_rating_benchmark"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "item_rating_expectation": 3, "item_rating_benchmark": 4.5})
    return path


@pytest.fixture()
def survey_warehouse(warehouse, tmp_path):
    demo = tmp_path / "demo"
    generate(demo, customers=1500, days=DAYS, start=START, seed=13)
    landing = tmp_path / "landing"
    _survey_only(demo, landing)
    cfg = tmp_path / "cxloop.yml"
    catalogue = _catalogue_with_item_levels(tmp_path / "catalogue.csv")
    cfg.write_text(
        f"landing: {landing}\nhome: {tmp_path / 'home'}\n"
        f"reference:\n  touchpoint_catalogue: {catalogue}\n"
        "goals:\n"
        "  satisfied: {column: nps, kind: binary}\n"
        "  overall_satisfaction: {column: overall_satisfaction, range: [1, 10], top_box: [9, 10]}\n"
        "quadrant: {bootstrap_samples: 40}\n")
    settings = load_settings(cfg)
    load.refresh_reference(warehouse, settings)
    gx = GxRunner(settings.home, warehouse.sqlalchemy_url())
    days = [START + timedelta(days=i) for i in range(DAYS)]
    batches = list(find_batches(settings, days))
    for name in ("responses", "item_ratings"):
        results = load.ingest_entity(warehouse, gx, name, [b for b in batches if b.entity == name],
                                     "test-run")
        assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), results
    transform.build(warehouse, settings, END, exclude=transform.AFTER_PYTHON)
    yield warehouse, settings, demo
    shutil.rmtree(settings.home, ignore_errors=True)


def test_survey_only_item_ratings_feed_scorecard_goals_and_a_binary_driver(survey_warehouse):
    wh, settings, demo = survey_warehouse
    truth = json.loads((demo / "_truth" / "truth.json").read_text())

    sc = wh.read_frame("select * from marts.mart_touchpoint_scorecard "
                       "where segment = 'all' and period_type = 'last_30_days'")
    rated = wh.read_frame("select touchpoint_code, count(*) as n, avg(rating) as mean_rating "
                          "from intermediate.int_item_ratings_enriched "
                          "where rating_date > %(end)s::date - 30 group by 1",
                          {"end": END}).set_index("touchpoint_code")
    assert len(rated) >= 5
    sc = sc.set_index("touchpoint_code")
    assert set(sc.index) == set(rated.index)
    assert (sc.loc[rated.index, "item_ratings"] == rated["n"]).all()
    assert ((sc.loc[rated.index, "item_rating_avg"] - rated["mean_rating"].astype(float)).abs()
            < 1e-9).all()
    assert sc["n_interactions"].eq(0).all() and sc["csat"].isna().all()
    expected_score = (sc["item_rating_avg"] - 3) / 1.5 * 100
    assert ((sc["item_score"] - expected_score).abs() < 1e-9).all()
    assert ((sc["experience_score"] - sc["item_score"]).abs() < 1e-9).all()

    trend = wh.read_frame("select * from marts.mart_goal_trend where segment = 'all'")
    assert set(trend["goal"]) == {"satisfied", "overall_satisfaction"}
    os_all = wh.read_frame(
        "select count(*) filter (where overall_satisfaction >= 9)::float8 / count(*) as share "
        "from intermediate.int_responses_enriched where overall_satisfaction between 1 and 10")
    months = trend[trend.goal == "overall_satisfaction"]
    pooled = (months["n_top_box"].sum() / months["n_answers"].sum())
    assert abs(pooled - os_all["share"].iloc[0]) < 1e-9

    # a further segmentation dimension (cxloop.yml domain.segment_by) becomes a column of the
    # driver inputs, from the customer's version when answering (none here: survey only)
    transform.run_dbt(wh, settings, ["build", "--select", "int_driver_inputs"], END,
                      extra_vars={"segment_by": ["segment", "plan", "attributes.tier"]})
    inputs = wh.read_frame("select * from intermediate.int_driver_inputs")
    assert len(inputs) > 0
    for dimension in ("plan", "attributes.tier"):
        assert dimension in inputs.columns and inputs[dimension].isna().all(), dimension
    transform.build(wh, settings, END, select="int_driver_inputs")

    n = drivers.run_drivers(wh, settings)
    assert n > 0
    transform.build(wh, settings, END, select=transform.AFTER_PYTHON)
    imp = wh.read_frame("select * from marts.mart_driver_importance "
                        "where goal = 'satisfied' and segment_by = 'all'")
    assert len(imp) >= 5
    top = imp.sort_values("importance", ascending=False)["touchpoint_code"].iloc[0]
    assert top in truth["planted"]["fix_first"]
    q = wh.read_frame("select * from marts.mart_priority_quadrant where is_headline")
    assert set(q["goal"]) == {"satisfied"} and set(q["cut_rule"]) == {"mean"}
    q = q.set_index("touchpoint_code")
    for tp in truth["planted"]["fix_first"]:
        assert q.loc[tp, "quadrant"] == "fix_first", q["quadrant"]
    # dbt places by the same rule the bootstrap in flows/drivers.py uses
    positive = (q["effect_sign"] > 0).to_numpy()
    imp, perf = q["importance"].to_numpy(), q["performance"].to_numpy()
    ic, rc = drivers.cuts(imp, perf, positive, settings.quadrant)
    assert abs(ic - q["importance_cut"].iloc[0]) < 1e-9 and abs(rc - q["rating_cut"].iloc[0]) < 1e-9
    assert list(drivers.place(imp, perf, positive, ic, rc)) == list(q["quadrant"])
    assert q["placement_flip_share"].between(0, 1).all()
    assert (q["placement_is_uncertain"] == (q["placement_flip_share"] > 0.1)).all()
