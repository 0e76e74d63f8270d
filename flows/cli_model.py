"""``cxloop model ...``: fit and inspect the churn model (registered on flows.cli.model_app)."""

from __future__ import annotations
