"""A rejected file is tried again on the next run, so fixing cxloop.yml is enough to load it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flows import load
from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches
from flows.validate import GxRunner

pytestmark = pytest.mark.integration

D = date(2026, 8, 3)


def _ingest(wh, landing: Path, home: Path, config: Path | None) -> list[load.BatchResult]:
    settings = load_settings(config, landing=str(landing), home=str(home))
    load.refresh_reference(wh, settings)
    gx = GxRunner(home, wh.sqlalchemy_url())
    batches = list(find_batches(settings, [D], ["responses"]))
    return load.ingest_entity(wh, gx, "responses", batches, "test-run")


def test_rejected_file_loads_after_the_encoding_is_fixed(warehouse, tmp_path):
    cols = ENTITIES["responses"].column_names
    row = ("r1,v1,c1,transactional,billing,2026-08-01 10:00:00,2026-08-02 10:00:00,"
           "9,5,6,9,5,账单清楚，谢谢,zh")
    folder = tmp_path / "landing" / "survey" / "responses" / D.isoformat()
    folder.mkdir(parents=True)
    (folder / "responses.csv").write_bytes((",".join(cols) + "\n" + row + "\n").encode("gb18030"))
    landing = tmp_path / "landing"

    [first] = _ingest(warehouse, landing, tmp_path, None)  # utf-8 by default: rejected
    assert first.status == "rejected" and "gb18030" in first.error
    [again] = _ingest(warehouse, landing, tmp_path, None)  # nothing fixed: rejected again
    assert again.status == "rejected"

    fixed = tmp_path / "cxloop.yml"
    fixed.write_text("sources:\n  crm: {}\n  survey:\n    encoding: gb18030\n")
    [after] = _ingest(warehouse, landing, tmp_path, fixed)
    assert after.status == "loaded" and after.rows_loaded == 1
    with warehouse.transaction() as cur:
        cur.execute("select status, rows_loaded, error from ops.load_batches")
        assert cur.fetchall() == [("loaded", 1, None)]  # one record, the latest attempt
        cur.execute("select comment from raw.responses")
        assert cur.fetchone()[0] == "账单清楚，谢谢"
    [later] = _ingest(warehouse, landing, tmp_path, fixed)  # loaded once: now skipped
    assert later.status == "skipped"
