"""What sits in the landing folder but can never load is named in a warning, never read."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from flows.config import load_settings
from flows.entities import ENTITIES
from flows.extract import find_batches, misplaced_input

D = date(2026, 8, 3)


def _landing(tmp_path: Path) -> tuple[Path, Path]:
    landing = tmp_path / "landing"
    day = landing / "crm" / "orders" / D.isoformat()
    day.mkdir(parents=True)
    header = ",".join(ENTITIES["orders"].column_names) + "\n"
    (day / "orders.csv").write_text(header + "o1,c1,2026-08-03,19.90\n")
    (day / "notes.txt").write_text("not an extract\n")
    (day / "gone.csv").symlink_to(tmp_path / "deleted.csv")
    secret = tmp_path / "outside.csv"
    secret.write_text("root:x:0:0\n")
    (day / "outside.csv").symlink_to(secret)
    (landing / "crm" / "orders" / "2026-13-45").mkdir()
    (landing / "crm" / "interaction" / D.isoformat()).mkdir(parents=True)
    return landing, secret


def test_misplaced_input_is_named_and_links_out_of_the_landing_are_never_read(tmp_path):
    landing, secret = _landing(tmp_path)
    settings = load_settings(None, landing=str(landing), home=str(tmp_path / "home"))
    warnings = misplaced_input(settings, [D])
    text = "\n".join(warnings)
    assert "interaction: not an entity folder of source crm (did you mean interactions?)" in text
    assert "2026-13-45: not a date folder" in text
    assert "notes.txt: not a .csv, .csv.gz, .parquet file" in text
    assert "gone.csv: a link to a missing file" in text
    assert "outside.csv: links outside the landing folder" in text
    assert "root:x" not in text  # names only, never content
    assert len(warnings) == 5
    batches = list(find_batches(settings, [D]))
    assert [b.path.name for b in batches] == ["orders.csv"]


def test_a_link_inside_the_landing_folder_still_loads(tmp_path):
    landing, _ = _landing(tmp_path)
    day = landing / "crm" / "orders" / D.isoformat()
    os.remove(day / "outside.csv")
    (day / "again.csv").symlink_to(day / "orders.csv")
    settings = load_settings(None, landing=str(landing), home=str(tmp_path / "home"))
    assert sorted(b.path.name for b in find_batches(settings, [D])) == ["again.csv", "orders.csv"]
    assert not any("again.csv" in w for w in misplaced_input(settings, [D]))
