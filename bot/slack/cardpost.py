"""A run's card is posted once, even if byoi dies while Slack takes the post.

The post is recorded as intended first and carries the run and the installation in its message
metadata. A restart that finds an intended card with no message stored looks for it in the
channel (conversations.history, newest first) and adopts it instead of posting a second card;
thread replies do the same in their thread (bot/slack/thread.py).
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack import readback

log = logging.getLogger(__name__)

CARD = "card"
"""The card's entry among a run's replies (where its intent is recorded)."""
EVENT_TYPE = "byoi_card"
_NOT_HERE = ("not_in_channel", "channel_not_found")
"""This channel only: a public channel byoi posts in without being a member (chat:write.public)."""
_PAGES = 5
"""Pages of 200 messages looked through: the card was posted just before the crash."""


def metadata(run_id: int, installation: str) -> dict[str, object]:
    """What finds the card again in its channel (Slack message metadata)."""
    return {"event_type": EVENT_TYPE, "event_payload": {"run": run_id, "install": installation}}


class CardFinder:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._cannot_read = False
        """Slack refused to show a channel's history (a missing scope): said once."""

    def find(self, channel: str, run_id: int, installation: str) -> str | None:
        """The ts of the run's card among the channel's newest messages, or None (then byoi
        posts it again: also when Slack will not show the history to this token)."""
        if self._cannot_read:
            return None
        try:
            for message in readback.messages(
                self.client.conversations_history, _PAGES, channel=channel
            ):
                if _is_card(message, run_id, installation):
                    return str(message["ts"])
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in _NOT_HERE:
                log.info("cannot read the history of %s (%s): the card is posted", channel, error)
                return None
            if error not in readback.CANNOT_READ:
                raise
            self._cannot_read = True
            log.warning(
                "cannot read channel history (%s): a card whose post a crash left unknown is "
                "posted again; add the channels:history and groups:history scopes",
                exc.response.get("error"),
            )
        return None


def _is_card(message: dict[str, object], run_id: int, installation: str) -> bool:
    data = message.get("metadata")
    if not isinstance(data, dict) or data.get("event_type") != EVENT_TYPE:
        return False
    payload = data.get("event_payload")
    return (
        isinstance(payload, dict)
        and payload.get("run") == run_id
        and payload.get("install") == installation
    )
