"""The CLI on bad input: one clear message, a non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cxloop(home: Path, *args: str, env: dict[str, str] | None = None):
    e = {**os.environ, "CXLOOP_HOME": str(home), "COLUMNS": "200", **(env or {})}
    if not env or "CXLOOP_WAREHOUSE_URL" not in env:
        e.pop("CXLOOP_WAREHOUSE_URL", None)
    return subprocess.run([sys.executable, "-m", "flows", *args], env=e, capture_output=True,
                          text=True, timeout=300, cwd=home)


def test_every_command_has_help(tmp_path):
    for cmd in (["--help"], ["run", "--help"], ["backfill", "--help"], ["demo", "--help"],
                ["demo", "generate", "--help"], ["warehouse", "url", "--help"],
                ["batches", "--help"], ["quarantine", "show", "--help"],
                ["quarantine", "replay", "--help"], ["model", "fit", "--help"],
                ["tasks", "list", "--help"], ["report", "--help"], ["serve", "--help"],
                ["deploy", "--help"]):
        res = _cxloop(tmp_path, *cmd)
        assert res.returncode == 0, (cmd, res.stderr)
        assert "Usage" in res.stdout


def test_malformed_config_names_the_key(tmp_path):
    (tmp_path / "bad.yml").write_text("sources:\n  crm:\n    delimter: ';'\n")
    res = _cxloop(tmp_path, "run", "--date", "2026-08-01", "--config", str(tmp_path / "bad.yml"))
    assert res.returncode == 2
    assert "sources.crm.delimter" in res.stderr and "Traceback" not in res.stderr


def test_missing_config_file(tmp_path):
    res = _cxloop(tmp_path, "run", "--config", str(tmp_path / "nope.yml"))
    assert res.returncode == 2 and "no such file" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_warehouse_url(tmp_path):
    res = _cxloop(tmp_path, "warehouse", "url",
                  env={"CXLOOP_WAREHOUSE_URL": "postgresql://u:pw@127.0.0.1:1/none"})
    assert res.returncode == 2
    assert "cannot connect to CXLOOP_WAREHOUSE_URL" in res.stderr
    assert "pw@" not in res.stderr  # the password is redacted
    assert "Traceback" not in res.stderr


def test_bad_date_and_range(tmp_path):
    res = _cxloop(tmp_path, "backfill", "--start", "2026-08-05", "--end", "2026-08-01")
    assert res.returncode == 2 and "before --start" in res.stderr
    res = _cxloop(tmp_path, "run", "--date", "yesterday")
    assert res.returncode == 2 and "YYYY-MM-DD" in res.stderr


@pytest.mark.integration
def test_no_extracts_for_the_date_fails_cleanly_and_records_the_run(tmp_path):
    landing = tmp_path / "empty-landing"
    landing.mkdir()
    res = _cxloop(tmp_path, "run", "--date", "2026-08-01", "--landing", str(landing))
    assert res.returncode == 2
    assert "no extracts in" in res.stderr and str(landing) in res.stderr
    assert "Traceback" not in res.stderr
    from flows.warehouse import open_warehouse, stop_embedded

    wh = open_warehouse(tmp_path)
    try:
        with wh.transaction() as cur:
            cur.execute("select status from ops.pipeline_runs")
            assert [r[0] for r in cur.fetchall()] == ["failed"]
            cur.execute("select count(*) from ops.load_batches")
            assert cur.fetchone()[0] == 0
    finally:
        stop_embedded(tmp_path)
