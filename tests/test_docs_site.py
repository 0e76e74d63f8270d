"""The dbt docs site is regenerated when what it shows changes, not on every run."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from flows import docs_site
from flows.transform import DBT_DIR

pytestmark = pytest.mark.integration


def _project(tmp_path: Path) -> Path:
    """A small stand-in project folder: the digest reads files, not dbt."""
    d = tmp_path / "project"
    (d / "models").mkdir(parents=True)
    (d / "seeds").mkdir()
    (d / "models" / "m.sql").write_text("select 1 as x\n")
    (d / "seeds" / "s.csv").write_text("a\n1\n")
    (d / "target").mkdir()
    (d / "target" / "run_results.json").write_text("{}")
    return d


def test_inputs_ignore_the_run_date_and_follow_files_vars_and_columns(warehouse, tmp_path):
    d = _project(tmp_path)
    seeds = d / "seeds"
    night = {"run_date": "2026-01-01", "task_dates_from": "2026-01-01", "segment_by": ["segment"]}
    base = docs_site.docs_inputs(warehouse, d, seeds, night)
    # another night, the weekly full check, dbt's own output: the same site
    assert docs_site.docs_inputs(warehouse, d, seeds, {**night, "run_date": "2026-01-02",
                                                       "task_dates_from": "2025-01-01",
                                                       "full_tests": True}) == base
    (d / "target" / "run_results.json").write_text('{"changed": true}')
    assert docs_site.docs_inputs(warehouse, d, seeds, night) == base
    # a configuration var, a model, a seed row, a column: a different site
    assert docs_site.docs_inputs(warehouse, d, seeds, {**night, "segment_by": ["region"]}) != base
    (d / "models" / "m.sql").write_text("select 2 as x\n")
    changed_model = docs_site.docs_inputs(warehouse, d, seeds, night)
    assert changed_model != base
    (d / "models" / "m.sql").write_text("select 1 as x\n")
    (d / "seeds" / "s.csv").write_text("a\n1\n2\n")
    assert docs_site.docs_inputs(warehouse, d, seeds, night) != base
    (d / "seeds" / "s.csv").write_text("a\n1\n")
    assert docs_site.docs_inputs(warehouse, d, seeds, night) == base
    # a seed folder of the user's own counts too
    own = tmp_path / "own_seeds"
    shutil.copytree(seeds, own)
    with_own = docs_site.docs_inputs(warehouse, d, own, night)
    (own / "s.csv").write_text("a\n3\n")
    assert docs_site.docs_inputs(warehouse, d, own, night) != with_own
    with warehouse.transaction() as cur:
        cur.execute("alter table ops.pipeline_runs add column docs_probe integer")
    try:
        assert docs_site.docs_inputs(warehouse, d, seeds, night) != base
    finally:
        with warehouse.transaction() as cur:
            cur.execute("alter table ops.pipeline_runs drop column docs_probe")
    assert docs_site.docs_inputs(warehouse, d, seeds, night) == base


def test_a_site_is_current_only_when_complete_and_stamped_with_the_same_inputs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for f in ("index.html", "manifest.json", "catalog.json"):
        (folder / f).write_text("{}")
    assert not docs_site.current(folder, "abc")  # no stamp yet
    docs_site.write_stamp(folder, "abc", date(2026, 1, 1))
    assert docs_site.current(folder, "abc")
    assert not docs_site.current(folder, "abd")
    (folder / "catalog.json").unlink()  # a site dbt did not finish
    assert not docs_site.current(folder, "abc")
    assert docs_site.read_stamp(folder)["run_date"] == "2026-01-01"


def test_the_real_project_digest_skips_dbt_output(warehouse):
    # target/ and logs/ under the project change with every build (a developer running dbt
    # by hand writes there): they must not make every run regenerate the site
    vars_ = {"run_date": "2026-01-01"}
    before = docs_site.docs_inputs(warehouse, DBT_DIR, DBT_DIR / "seeds", vars_)
    probe = DBT_DIR / "target" / "cxloop_docs_probe.txt"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text("x")
    try:
        assert docs_site.docs_inputs(warehouse, DBT_DIR, DBT_DIR / "seeds", vars_) == before
    finally:
        probe.unlink()


def test_a_docs_site_dbt_cannot_build_is_a_warning_and_not_stamped(warehouse, tmp_path):
    # The run's data is built and tested before the docs: dbt failing to generate them
    # (here a var its compile rejects) must not fail the run nor mark the site current.
    from flows.config import load_settings
    from flows.transform import docs_generate

    settings = load_settings(None, home=str(tmp_path))
    site = docs_generate(warehouse, settings, date(2026, 1, 1), {"task_dates_from": "soon"})
    assert not site.regenerated and site.error and "dbt docs generate" in site.error
    assert site.detail().startswith("not regenerated: ")
    assert not (docs_site.site(settings) / docs_site.STAMP).exists()
