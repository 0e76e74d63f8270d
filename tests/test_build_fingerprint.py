"""A kept model is rebuilt in full when what its rows depend on besides its inputs changed.

Staging and the models kept by customer or key build incrementally while their stored
fingerprint (macros/incremental_staging.sql: build_fingerprint) matches. It covers the
model's SQL, every macro it calls at any depth (its hooks' included) and the vars: a
release that changes a hook macro, or a changed setting, must not leave rows written the
old way beside rows written the new way.
"""

from __future__ import annotations

import shutil
from datetime import date

from raw_batches import interactions_batch

from flows import transform
from flows.config import load_settings

DAY = date(2026, 3, 2)
MODEL = "stg_crm__interactions"


def _build_was_full(warehouse, settings, **extra) -> bool:
    out = transform.run_dbt(warehouse, settings, ["run", "--select", MODEL], DAY,
                            extra_vars=extra or None)
    assert out.success, out.failures
    with warehouse.transaction() as cur:
        cur.execute("select full_build from ops.dbt_incremental_builds where model = %s",
                    (MODEL,))
        return cur.fetchone()[0]


def test_a_changed_hook_macro_or_var_rebuilds_a_kept_model_in_full(warehouse, tmp_path,
                                                                   monkeypatch):
    project = tmp_path / "dbt_project"
    shutil.copytree(transform.DBT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    monkeypatch.setattr(transform, "DBT_DIR", project)
    settings = load_settings(home=str(tmp_path))
    with warehouse.transaction() as cur:
        interactions_batch(cur, "b1", DAY, ["I1", "I2"])
    assert _build_was_full(warehouse, settings)  # the first build
    assert not _build_was_full(warehouse, settings)  # nothing changed: incremental
    # ensure_indexes is called only by the post-hook's record_staging_build, not by the
    # model: a change to it is two macro calls away from the model
    macros = project / "macros" / "incremental_staging.sql"
    text = macros.read_text()
    head = "{% macro ensure_indexes(columns, relation=none) -%}\n"
    assert text.count(head) == 1
    macros.write_text(text.replace(head, head + "    {#- a release's change -#}\n"))
    assert _build_was_full(warehouse, settings)
    assert not _build_was_full(warehouse, settings)
    # a var (a setting in cxloop.yml) changed
    assert _build_was_full(warehouse, settings, survey_answer_grace_days=99)
    assert not _build_was_full(warehouse, settings, survey_answer_grace_days=99)
    # the per-run vars do not count
    assert not _build_was_full(warehouse, settings, survey_answer_grace_days=99,
                               full_tests=True)
    with warehouse.transaction() as cur:
        cur.execute(f"select count(*) from staging.{MODEL}")
        assert cur.fetchone()[0] == 2
