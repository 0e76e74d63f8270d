"""The ``alerts:`` section of ``cxloop.yml``: the intra-day alerts run, its SMTP relay
and owner notifications (flows/alerts.py, flows/notify.py).

Kept apart because the alerts flow and the notifier import only this, not the domain
or the analysis settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from flows.config_sections.base import _Strict, known_entities


class SmtpSettings(_Strict):
    """Where e-mail alerts go out. The password is never in the file: ``password_env``
    names the environment variable that holds it (and ``username_env`` the user's)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str | None = None  # unset: e-mail contacts are recorded as not sent, with a reason
    port: int = Field(25, ge=1, le=65535)
    from_addr: str = Field("cxloop@localhost", alias="from")
    # insecure (plain SMTP, e.g. a relay on the same host) | starttls | ssl
    secure: Literal["insecure", "starttls", "ssl"] = "insecure"
    username_env: str | None = None
    password_env: str | None = None
    timeout_seconds: float = Field(15.0, gt=0, le=300)


def _hh_mm(v: str) -> str:
    from datetime import time

    try:
        time.fromisoformat(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a time of day HH:MM (e.g. 22:00)") from None
    return v


class AlertSettings(_Strict):
    """The intra-day alerts run and owner notifications (flows/alerts.py, flows/notify.py)."""

    # Cron of the hourly ``alerts`` deployment (``cxloop serve`` and ``cxloop deploy``), in
    # the top-level timezone.
    schedule: str = "0 * * * *"
    # Entities the alerts run picks up from today's landing folders (the realtime rules'
    # inputs); the nightly run finds these batches already loaded.
    entities: list[str] = Field(default_factory=lambda: ["responses"], min_length=1)
    # [start, end] in the configured timezone: immediate alerts then wait for the digest.
    quiet_hours: tuple[str, str] | None = None
    # Immediate alerts per owner in any hour; the rest are folded into the next digest.
    max_immediate_per_owner_per_hour: int = Field(5, ge=0)
    # Attempts after the first for a message that failed, and the pause between them.
    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(2.0, ge=0, le=300)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    # Recovery-survey invitations go to <outbound>/survey/invitations/<date>/ (default
    # <home>/outbound).
    outbound: str | None = None
    # A link to the task in messages, e.g. "https://tickets.example.org/cx/{task_id}".
    task_link: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=v)
        except ValueError:
            raise ValueError(f"{v!r} is not a cron expression (e.g. '0 * * * *' for hourly)") from None
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _times(cls, v: tuple[str, str] | None) -> tuple[str, str] | None:
        if v is not None:
            for t in v:
                _hh_mm(t)
        return v

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_entities(v)
