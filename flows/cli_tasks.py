"""``cxloop tasks ...``: list and export improvement tasks (registered on flows.cli.tasks_app)."""

from __future__ import annotations
