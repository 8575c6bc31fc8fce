"""Stale-image alerts, one per (app, env, image, finding): deduped, reminded, snoozed, resolved.

The alert table (pipeline/state/alerts.py) turns a scan's sightings into the changes to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

SNOOZE = timedelta(days=7)
REMIND_EVERY = timedelta(days=1)


class AlertState(StrEnum):
    OPEN = "open"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    id: int
    app: str
    env: str
    image_id: str
    image_name: str
    finding: str
    detail: str
    state: AlertState
    first_seen: datetime
    last_seen: datetime
    snoozed_until: datetime | None
    snoozed_by: str | None
    resolved_at: datetime | None
    channel: str | None
    shown_as: str | None
    """Where the alert is shown: an opaque reference owned by the front end that shows it."""
    reminded_at: datetime | None = None
    """When it was last posted or reminded; reminders wait for ``stale.remind_every``."""

    @property
    def label(self) -> str:
        return f"alert {self.id}"

    def reminder_due(self, now: datetime, every: timedelta) -> bool:
        """At most one reminder per ``every``, counted from the card or the last reminder."""
        return now - (self.reminded_at or self.first_seen) >= every


@dataclass
class Changes:
    """What a scan changed: new cards to post, reminders in threads, cards to close."""

    new: list[Alert] = field(default_factory=list)
    reminded: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.reminded or self.resolved)


@dataclass(frozen=True)
class Sighting:
    """What one scan saw of one environment's image: its findings by kind, details joined."""

    app: str
    env: str
    image_id: str
    image_name: str
    channel: str | None
    findings: dict[str, str]
