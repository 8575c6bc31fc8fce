"""A stale-image alert as both surfaces show it: what is wrong, since when, and what fixes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.views.words import day, moment, state_words
from pipeline.domain.alerts import Alert, AlertState

FINDING_TITLE = {
    "age": "too old",
    "drift": "drifted from the manifest",
    "unknown": "versions unknown",
    "deprecated": "deprecated",
    "obsolete": "obsolete",
    "fleet": "not what the fleet runs",
}


@dataclass(frozen=True)
class AlertView:
    id: int
    where: str
    image_name: str
    finding: str
    title: str
    """The finding as an adjective: `too old`, `drifted from the manifest`."""
    detail: str
    state: AlertState
    state_words: str
    until: str | None
    """The day a snoozed alert wakes up."""
    snoozed_by: str
    rolls: bool
    """Fixed by rolling the fleet onto the current image, not by refreshing the image."""
    fix: str
    """The command that fixes it: `refresh web --env production`."""
    snooze: str
    since: str
    checked: str
    resolved: str
    first_seen: datetime

    @property
    def open(self) -> bool:
        return self.state == AlertState.OPEN

    def days_open(self, now: datetime) -> int:
        return max(0, (now - self.first_seen).days)

    @property
    def standing(self) -> str:
        """Its state, with the day a snooze ends: `snoozed until 2026-11-09`."""
        if self.until and self.state == AlertState.SNOOZED:
            return f"{self.state_words} until {self.until}"
        return self.state_words


def alert_view(alert: Alert) -> AlertView:
    rolls = alert.finding == "fleet"
    return AlertView(
        id=alert.id,
        where=f"{alert.app}/{alert.env}",
        image_name=alert.image_name,
        finding=alert.finding,
        title=FINDING_TITLE.get(alert.finding, alert.finding),
        detail=alert.detail,
        state=alert.state,
        state_words=state_words(alert.state),
        until=day(alert.snoozed_until) if alert.snoozed_until else None,
        snoozed_by=alert.snoozed_by or "?",
        rolls=rolls,
        fix=f"{'roll' if rolls else 'refresh'} {alert.app} --env {alert.env}",
        snooze=f"snooze {alert.id}",
        since=day(alert.first_seen),
        checked=moment(alert.last_seen),
        resolved=moment(alert.resolved_at) if alert.resolved_at else "now",
        first_seen=alert.first_seen,
    )
