"""Failpoints: named places where a test can make the process die as if killed.

``CXLOOP_FAILPOINT=<name>`` makes :func:`failpoint` end the process at once with
``os._exit(137)`` (what ``kill -9`` looks like): no cleanup, no rollback in Python,
no atexit. The crash-recovery tests use it to prove that a run killed anywhere and
then re-run leaves the same warehouse as an uninterrupted run. Unset, it costs a
dict lookup.
"""

from __future__ import annotations

import os


def failpoint(name: str) -> None:
    if os.environ.get("CXLOOP_FAILPOINT") == name:
        os._exit(137)
