"""``cxloop warehouse``: the embedded server's URL, BI access over TCP, stopping it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import ConfigOpt, _open, _settings, console, handle_errors, warehouse_app
from flows.errors import CxloopError


@warehouse_app.command("url")
@handle_errors
def warehouse_url(config: ConfigOpt = None) -> None:
    """Print a libpq URI of the warehouse (starts the embedded server if needed)."""
    s, wh = _open(config)
    print(wh.url)


@warehouse_app.command("serve")
@handle_errors
def warehouse_serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless you mean it).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 5433,
    config: ConfigOpt = None,
) -> None:
    """Expose the embedded warehouse over TCP for BI tools, as the read-only bi_reader.

    The bi_reader password comes from CXLOOP_BI_PASSWORD; TCP logins need it
    (scram-sha-256). The restart waits for a running pipeline to finish (the run lock).
    The server keeps listening until `cxloop warehouse stop`, and listens there again
    whenever cxloop starts it later.
    """
    from flows.warehouse import serve_embedded_tcp

    s = _settings(config)
    if s.warehouse_url:
        raise CxloopError("CXLOOP_WAREHOUSE_URL points at an external server: give BI tools "
                          "that server's address and a read-only role instead")
    url = serve_embedded_tcp(Path(s.home), host, port, os.environ.get("CXLOOP_BI_PASSWORD", ""),
                             s.database, s.lock_timeout_seconds)
    console.print(f"BI tools: {url} (password from CXLOOP_BI_PASSWORD); schema marts")


@warehouse_app.command("stop")
@handle_errors
def warehouse_stop(config: ConfigOpt = None) -> None:
    """Stop the embedded server (an external warehouse is left alone)."""
    from flows.warehouse import stop_embedded

    s = _settings(config)
    console.print("stopped" if stop_embedded(Path(s.home)) else "not running")
