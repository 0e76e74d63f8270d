"""Prefect's temporary server dies with the command that started it.

Without ``PREFECT_API_URL`` a flow run starts Prefect's temporary API server as a
child process and stops it at exit (``atexit``). A command killed outright
(``kill -9``, the OOM killer, a CI timeout) never runs ``atexit``, and the server
stays behind, listening, until someone finds it. So the CLI starts that server
itself, before the flow would, and hands its pid to a tiny watchdog process that
holds the read end of a pipe: when this process ends, however it ends, the pipe
closes and the watchdog stops the server, then exits itself.
"""

from __future__ import annotations

import subprocess
import sys
from typing import IO

_WATCHDOG = r"""
import os, signal, sys, time
pid = int(sys.argv[1])
sys.stdin.buffer.read()  # returns at EOF: the parent has exited, however it exited
def alive():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:  # still the server, not a reused pid
            return b"uvicorn" in f.read()
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
if alive():
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            time.sleep(0.1)
            if not alive():
                break
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""

_guard: dict[str, object] = {}  # the watchdog and our end of its pipe, kept for our lifetime


def watch(pid: int) -> subprocess.Popen:
    """A watchdog that stops process ``pid`` once this process has ended."""
    proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(pid)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    pipe: IO[bytes] | None = proc.stdin
    _guard[str(pid)] = (proc, pipe)
    return proc


def tie_temporary_server() -> int | None:
    """Start Prefect's temporary server now if runs would use one, watched; its pid."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None  # a real server: nothing of ours to clean up
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client will reuse
    server.start()
    if server.server_process is None:  # pragma: no cover - start() raises instead
        return None
    pid = server.server_process.pid
    if str(pid) not in _guard:
        watch(pid)
    return pid
