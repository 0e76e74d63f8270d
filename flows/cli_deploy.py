"""``cxloop serve`` and ``cxloop deploy``: the schedules, here or on a Prefect server, on
one clock and with one config path."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from flows.cli import ConfigOpt, _settings, app, handle_errors
from flows.errors import CxloopError


@app.command()
@handle_errors
def serve(config: ConfigOpt = None) -> None:
    """Run the nightly schedule (02:00, configured timezone), the hourly alerts schedule
    (cxloop.yml alerts.schedule) and the backfill deployment here.

    Uses Prefect's serve: no separate server or worker needed on this machine.
    """
    from prefect import serve as prefect_serve
    from prefect.schedules import Cron

    from flows.alerts import alerts_flow
    from flows.pipeline import backfill as backfill_flow
    from flows.pipeline import nightly as nightly_flow
    from flows.prefect_server import tie_temporary_server

    s = _settings(config)
    params = {"config": str(s.config_path)} if s.config_path else {}
    tie_temporary_server()  # without PREFECT_API_URL: the temporary server dies with us
    prefect_serve(
        nightly_flow.to_deployment(name="nightly", parameters=params,
                                   schedules=[Cron("0 2 * * *", timezone=s.timezone)]),
        alerts_flow.to_deployment(name="alerts", parameters=params,
                                  schedules=[Cron(s.alerts.schedule, timezone=s.timezone)]),
        backfill_flow.to_deployment(name="backfill", parameters=params),
    )


def deployment_env(settings) -> dict[str, str]:
    """The values ``prefect.yaml`` takes from the environment (``{{ $CXLOOP_... }}``):
    the schedules' timezone, the alerts cron and the config path, from the resolved settings,
    so a deployment on a Prefect server and ``cxloop serve`` run on the same clock."""
    return {"CXLOOP_TIMEZONE": settings.timezone,
            "CXLOOP_CONFIG": str(settings.config_path or ""),
            "CXLOOP_ALERTS_SCHEDULE": settings.alerts.schedule}


@app.command()
@handle_errors
def deploy(
    config: ConfigOpt = None,
    prefect_args: Annotated[list[str] | None, typer.Argument(
        help="Extra arguments for `prefect deploy` (e.g. -- --name nightly).")] = None,
) -> None:
    """Register the deployments of prefect.yaml with a Prefect server (PREFECT_API_URL).

    Runs `prefect deploy --all` with the schedules' timezone, the alerts schedule and the
    config path taken from cxloop.yml, the same values `cxloop serve` uses.
    """
    import subprocess

    from flows.config import REPO_ROOT

    s = _settings(config)
    env = {**os.environ, **deployment_env(s)}
    cmd = [sys.executable, "-m", "prefect", "deploy", "--all", "--prefect-file",
           str(REPO_ROOT / "prefect.yaml"), *(prefect_args or [])]
    res = subprocess.run(cmd, env=env, cwd=REPO_ROOT)
    if res.returncode:
        raise CxloopError(f"prefect deploy exited {res.returncode} (see its output above)")
