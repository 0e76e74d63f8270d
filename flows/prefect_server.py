"""Prefect's temporary server dies with the command that started it.

Without ``PREFECT_API_URL`` a flow run starts Prefect's temporary API server as a
child process and stops it at exit (``atexit``). A command killed outright
(``kill -9``, the OOM killer, a CI timeout) never runs ``atexit``, and the server
stays behind, listening, until someone finds it. So the CLI starts that server
itself, before the flow would, and hands its pid (as soon as it is spawned) to a
tiny watchdog process that holds the read end of a pipe: when this process ends,
however it ends, the pipe closes and the watchdog stops the server, then exits.
"""

from __future__ import annotations

import subprocess
import sys
from typing import IO

_WATCHDOG = r"""
import os, signal, sys, time
pids = [int(line) for line in sys.stdin.buffer]  # one per line, until EOF: the parent is gone
def alive(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:  # still the server, not a reused pid
            return b"uvicorn" in f.read()
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
for pid in [p for p in pids if alive(p)]:
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            time.sleep(0.1)
            if not alive(pid):
                break
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""

_guard: dict[str, subprocess.Popen] = {}  # the watchdog, kept (with its pipe) for our lifetime


def _watchdog() -> subprocess.Popen:
    """The watchdog, started once; write a pid to its stdin to have it stopped later."""
    if "dog" not in _guard:
        _guard["dog"] = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return _guard["dog"]


def watch(pid: int) -> None:
    """Have process ``pid`` stopped once this process has ended."""
    pipe: IO[bytes] | None = _watchdog().stdin
    assert pipe is not None
    pipe.write(f"{pid}\n".encode())
    pipe.flush()


def tie_temporary_server() -> int | None:
    """Start Prefect's temporary server now if runs would use one, watched; its pid.

    The watchdog learns the server's pid the moment it is spawned, not once it answers
    (start-up takes 10-20 s on a busy machine: a kill then must not orphan it either).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None  # a real server: nothing of ours to clean up
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client will reuse
    if not server.running:
        spawn = getattr(server, "_run_uvicorn_command", None)
        if callable(spawn):
            def spawn_watched() -> subprocess.Popen:
                proc = spawn()
                watch(proc.pid)
                return proc

            server._run_uvicorn_command = spawn_watched  # this instance only
        server.start()
        if not callable(spawn) and server.server_process is not None:
            watch(server.server_process.pid)
    return server.server_process.pid if server.server_process else None
