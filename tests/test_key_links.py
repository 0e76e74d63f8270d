"""A model kept by key must name a link on every staging model it reads.

Its nightly rebuilds the rows whose linked values some input's build logged
(macros/incremental_by_key.sql); a staging input without a link would change unseen,
and the model would silently keep stale rows. The check fails the build instead, the
first one included.
"""

from __future__ import annotations

import shutil
from datetime import date

from flows import transform
from flows.config import load_settings
from flows.errors import StageError

DAY = date(2026, 3, 2)
MODEL = "models/intermediate/experience/int_driver_inputs.sql"


def _compile(warehouse, settings) -> str:
    """The failures of compiling int_driver_inputs, as text ('' when it compiles)."""
    try:
        out = transform.run_dbt(warehouse, settings,
                                ["compile", "--select", "resource_type:model,int_driver_inputs"], DAY)
    except StageError as err:
        return str(err)
    return "\n".join(out.failures)


def test_a_staging_input_without_a_link_fails_the_build(warehouse, tmp_path, monkeypatch):
    project = tmp_path / "dbt_project"
    shutil.copytree(transform.DBT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    monkeypatch.setattr(transform, "DBT_DIR", project)
    settings = load_settings(home=str(tmp_path))
    model = project / MODEL
    text = model.read_text()
    link = "    ['stg_survey__item_ratings', 'response_id', 'response_id'],\n"
    assert link in text
    model.write_text(text.replace(link, ""))
    # the shipped model compiles in every build of the suite; without the link it cannot
    failure = _compile(warehouse, settings)
    assert "int_driver_inputs is kept by key but reads stg_survey__item_ratings" in failure
