"""Errors a user can act on. The CLI prints their message and exits non-zero, no traceback."""

from __future__ import annotations


class CxloopError(Exception):
    """Base: the message says what went wrong, where, and what to do."""

    exit_code = 2
    # True when the cause can heal by itself (a lost connection, a lock, a serialization
    # failure): Prefect retries the task (flows/transient.py). Set by whoever raises.
    transient = False


class ConfigError(CxloopError):
    """``cxloop.yml`` or the environment is wrong."""


class WarehouseError(CxloopError):
    """The warehouse cannot be reached or prepared."""


class NoExtractsError(CxloopError):
    """The landing folder holds nothing for the requested dates."""


class LockTimeoutError(CxloopError):
    """Another run holds the warehouse lock."""

    exit_code = 3


class StageError(CxloopError):
    """A pipeline stage failed; the message names the stage."""
