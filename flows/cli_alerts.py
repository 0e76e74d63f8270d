"""``cxloop alerts``: the intra-day hot-alerts run (registered on flows.cli.app).

It runs the ``alerts`` flow in-process, like ``cxloop run`` runs the nightly one; under
``cxloop serve`` the same flow runs on the ``alerts.schedule`` cron.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import (
    ConfigOpt,
    LandingOpt,
    QuietOpt,
    _exit_for,
    _parse_date,
    _print_run,
    _settings,
    _today,
    app,
    handle_errors,
)


@app.command("alerts")
@handle_errors
def alerts_cmd(
    run_date: Annotated[str | None, typer.Option("--date", "-d",
            help="Date folder to pick up, YYYY-MM-DD (default: today in the configured "
                 "timezone).")] = None,
    config: ConfigOpt = None,
    landing: LandingOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Hot alerts now: load the survey files landed today, open the realtime rules' tasks
    (tasks.yml `realtime: true`) and notify their owners (owner_contacts.csv)."""
    from flows.alerts import alerts_flow

    settings = _settings(config, landing)
    d = _parse_date(run_date, "--date") if run_date else _today(settings.timezone)
    if settings.warehouse_url:
        os.environ["CXLOOP_WAREHOUSE_URL"] = settings.warehouse_url
    os.environ["CXLOOP_HOME"] = str(Path(settings.home).resolve())
    summary = alerts_flow(run_date=d, landing=str(Path(settings.landing).resolve()),
                          config=str(settings.config_path) if settings.config_path else None)
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        _print_run(summary)
    _exit_for(summary)
