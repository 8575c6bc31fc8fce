"""Stale-image alert cards in Slack: posted once, reminded in their thread, edited when resolved.

What each card shows is recorded in the store; ``resync`` shows again every card behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from slack_sdk.errors import SlackClientError

from bot import alertblocks
from bot.cards import Poster
from pipeline import alerts, cardstate
from pipeline.alerts import Alert, Changes
from pipeline.store import Store

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class AlertCards:
    def __init__(self, poster: Poster, store: Store, clock: Clock) -> None:
        self.poster = poster
        self.store = store
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
            behind = cardstate.alerts_behind(self.store)
            for alert in behind:
                self._guard(self.update if alert.message_ts else self._post_or_reopen, alert)
        return len(behind)

    def _guard(self, action: Callable[[Alert], None], alert: Alert) -> None:
        try:
            action(alert)
        except (SlackClientError, OSError) as exc:
            log.warning("could not show %s in Slack (will retry): %s", alert.label, exc)

    def _post_or_reopen(self, alert: Alert) -> None:
        if alert.message_ts:
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
        alerts.set_message(
            self.store, alert.id, str(response.get("channel", alert.channel)), str(response["ts"])
        )
        cardstate.record_alert(self.store, alert, now)

    def _remind(self, alert: Alert) -> None:
        current = alerts.get(self.store, alert.id) or alert
        if not current.message_ts or not current.channel:
            self._post_or_reopen(current)  # never shown yet: post the card now
            return
        self.update(current)
        self.poster(
            current.channel,
            text=alertblocks.alert_reminder(current, self.clock()),
            thread_ts=current.message_ts,
        )

    def update(self, alert: Alert) -> None:
        with self._lock:
            current = alerts.get(self.store, alert.id) or alert
            if not current.message_ts or not current.channel:
                return
            self.poster.client.chat_update(
                channel=current.channel,
                ts=current.message_ts,
                text=self._fallback(current),
                blocks=alertblocks.alert_card(current, self.clock()),
            )
            cardstate.record_alert(self.store, current, self.clock())

    @staticmethod
    def _fallback(alert: Alert) -> str:
        return (
            f"Stale image for {alert.app}/{alert.env}: {alert.image_name} "
            f"({alert.finding}: {alert.detail}) · {alert.state.value}"
        )
