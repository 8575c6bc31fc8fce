"""Stale-image alert cards in Slack: posted once, reminded in their thread, edited when resolved.

What each card shows is recorded in the store; ``resync`` shows again every card behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_sdk.errors import SlackClientError

from bot.slack.blocks import alerts as alertblocks
from bot.slack.cards import Poster
from pipeline.domain.alerts import Alert, Changes
from pipeline.ports import Clock
from pipeline.services.display import Display

log = logging.getLogger(__name__)


class AlertCards:
    def __init__(self, poster: Poster, display: Display, clock: Clock) -> None:
        self.poster = poster
        self.display = display
        self.clock = clock
        # The schedule, the buttons and the resync all show cards: one at a time, or an
        # alert whose first post is slow could be posted twice.
        self._lock = threading.RLock()

    def show(self, changes: Changes) -> None:
        with self._lock:
            for alert in changes.new:
                self._guard(self._post_or_reopen, alert)
            for alert in changes.reminded:
                self._guard(self._remind, alert)
            for alert in changes.resolved:
                self._guard(self.update, alert)

    def resync(self) -> int:
        """Show again every alert card that is behind the store; returns how many."""
        with self._lock:
            behind = self.display.alerts_behind()
            for alert in behind:
                self._guard(self.update if alert.shown_as else self._post_or_reopen, alert)
        return len(behind)

    def _guard(self, action: Callable[[Alert], None], alert: Alert) -> None:
        try:
            action(alert)
        except (SlackClientError, OSError) as exc:
            log.warning("could not show %s in Slack (will retry): %s", alert.label, exc)

    def _post_or_reopen(self, alert: Alert) -> None:
        if alert.shown_as:
            self.update(alert)
            self._remind(alert)
            return
        if not alert.channel:
            log.info("%s has no channel (set channel: for %s)", alert.label, alert.app)
            return
        now = self.clock()
        response = self.poster(
            alert.channel, text=self._fallback(alert), blocks=alertblocks.alert_card(alert, now)
        )
        self.display.alert_shown(
            alert.id, str(response.get("channel", alert.channel)), str(response["ts"])
        )
        self.display.alert_card_current(alert, now)

    def _remind(self, alert: Alert) -> None:
        current = self.display.alert(alert.id) or alert
        if not current.shown_as or not current.channel:
            self._post_or_reopen(current)  # never shown yet: post the card now
            return
        self.update(current)
        self.poster(
            current.channel,
            text=alertblocks.alert_reminder(current, self.clock()),
            thread_ts=current.shown_as,
        )

    def update(self, alert: Alert) -> None:
        with self._lock:
            current = self.display.alert(alert.id) or alert
            if not current.shown_as or not current.channel:
                return
            self.poster.client.chat_update(
                channel=current.channel,
                ts=current.shown_as,
                text=self._fallback(current),
                blocks=alertblocks.alert_card(current, self.clock()),
            )
            self.display.alert_card_current(current, self.clock())

    @staticmethod
    def _fallback(alert: Alert) -> str:
        return alertblocks.alert_fallback(alert)
